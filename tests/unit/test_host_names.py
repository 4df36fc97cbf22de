"""Every name and value check refuses control characters and non-ASCII
digits: each validator, fed a good value with a trailing newline, a
carriage return, a NUL or Unicode digits, must refuse it."""

import ddt
import testtools

from cinder_zol.host import errors
from cinder_zol.host import grammar
from cinder_zol.host import names

SECRET = 'secret-123456'
HASH = 'sha512:' + 'ab' * 64
# validator, a value it accepts
VALIDATORS = {
    'component': (names.component, 'volume-1'),
    'parent': (names.parent, 'tank/cinder'),
    'size': (names.size, '1073741824'),
    'property name': (lambda v: names.properties({v: 'lz4'}), 'compression'),
    'property value': (lambda v: names.properties({'compression': v}),
                       'lz4'),
    'iqn': (names.iscsi_name, 'iqn.2010-10.org.openstack:volume-1'),
    'eui': (names.iscsi_name, 'eui.0123456789abcdef'),
    'naa': (names.iscsi_name, 'naa.0123456789abcdef'),
    'nqn': (names.nqn, 'nqn.2014-08.org.nvmexpress:uuid:1'),
    'chap user': (lambda v: names.chap([v, SECRET]), 'user'),
    'chap secret': (lambda v: names.chap(['user', v]), SECRET),
    'serial': (names.serial, '0123abcd-ef'),
    'image hash': (names.image_hash, HASH),
    'md5 image hash': (names.image_hash, 'md5:' + 'ab' * 16),
    'nvmet port number': (
        lambda v: grammar.check_nvmet('mkdir', 'ports/' + v), '1'),
    'nvmet value': (
        lambda v: grammar.check_nvmet('write', 'ports/1/addr_trsvcid', v),
        '4420'),
}
SUFFIXES = {'newline': '\n', 'carriage return': '\r', 'NUL': '\0',
            'CRLF': '\r\n', 'newline and more': '\nx'}


def cases():
    for name in sorted(VALIDATORS):
        for suffix in sorted(SUFFIXES):
            yield name, suffix


@ddt.ddt
class ControlCharacterTestCase(testtools.TestCase):

    @ddt.data(*sorted(VALIDATORS))
    def test_good_value_accepted(self, name):
        check, good = VALIDATORS[name]
        check(good)

    @ddt.data(*cases())
    @ddt.unpack
    def test_control_character_refused(self, name, suffix):
        check, good = VALIDATORS[name]
        self.assertRaises(errors.Refused, check, good + SUFFIXES[suffix])

    @ddt.data(*sorted(VALIDATORS))
    def test_leading_newline_refused(self, name):
        check, good = VALIDATORS[name]
        self.assertRaises(errors.Refused, check, '\n' + good)

    def test_chap_user_with_newline_refused(self):
        """A tgt config line injection (incominguser <user>\\n...)."""
        self.assertRaises(errors.Refused, names.chap,
                          ['evilUser\n', 'initiator-address=ALL'])
        self.assertRaises(errors.Refused, names.chap, ['evilUser\n', SECRET])


@ddt.ddt
class AsciiDigitsTestCase(testtools.TestCase):
    """'\\d' and str.isdigit() take any Unicode digit; the checks do not."""

    @ddt.data(
        (names.iscsi_name, 'iqn.\u0662\u0660\u0662\u0664-01.com.x:y'),
        (names.iscsi_name, 'iqn.2024-\uff10\uff11.com.x:y'),
        (names.nqn, 'nqn.\u0662\u0660\u0662\u0664-01.com.x:y'),
        (names.size, '\u0661\u0662'),
        (names.component, 'volume-\u0661'),
        (names.serial, '\u0661abc'),
        (names.image_hash, 'md5:' + '\u0661' * 32),
        (lambda v: grammar.check_nvmet('mkdir', 'ports/' + v), '\u0661'),
        (lambda v: grammar.check_nvmet(
            'mkdir', 'subsystems/nqn.2014-08.org.x:y/namespaces/' + v),
         '\u0661'),
        (lambda v: grammar.check_nvmet('write', 'ports/1/addr_trsvcid', v),
         '\u0664\u0664\u0662\u0660'),
    )
    @ddt.unpack
    def test_unicode_digits_refused(self, check, value):
        self.assertRaises(errors.Refused, check, value)


@ddt.ddt
class ImageHashTestCase(testtools.TestCase):

    @ddt.data('md5:' + 'a' * 32, 'sha256:' + '0' * 64, HASH)
    def test_accepted(self, value):
        self.assertEqual(value, names.image_hash(value))

    @ddt.data(None, 5, '', 'sha512:', 'sha512:00', 'sha1:' + 'a' * 40,
              'SHA512:' + 'ab' * 64, 'sha512:' + 'AB' * 64,
              'sha512:' + 'ab' * 65, 'sha512 ' + 'ab' * 64,
              'sha512:' + 'ab' * 63 + 'a ', 'sha512:' + 'g' * 128)
    def test_refused(self, value):
        e = self.assertRaises(errors.Refused, names.image_hash, value)
        self.assertIn('md5, sha256 or sha512', str(e))
