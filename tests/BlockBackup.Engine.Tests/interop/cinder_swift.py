#!/usr/bin/python3
"""Run the REAL Cinder swift backup driver (cinder/backup/drivers/swift.py) against an RGW / any Swift endpoint.
See cinder_objstore.py (same directory) for commands, options and what is faked.
  eval "$(tests/ceph/rgw-start.sh /tmp/rgw-ceph)"; export $(cut -d= -f1 /tmp/rgw-ceph/rgw.env)
  ./cinder_swift.py backup vol.img --id B1 --volume-id V1 --object-size 1048576
  ./cinder_swift.py layout B1;  ./cinder_swift.py restore B1 out.img
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cinder_objstore  # noqa: E402  (applies eventlet.monkey_patch() first, as cinder-backup does)

if __name__ == "__main__":
    cinder_objstore.main("swift")
