# Cinder objects must be registered before driver modules are imported.
from cinder import objects

objects.register_all()
