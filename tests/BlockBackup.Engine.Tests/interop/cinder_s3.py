#!/usr/bin/python3
"""Run the REAL Cinder s3 backup driver (cinder/backup/drivers/s3.py) against an RGW / any S3 endpoint.
See cinder_objstore.py (same directory) for commands, options and what is faked.
  eval "$(tests/ceph/rgw-start.sh /tmp/rgw-ceph)"; export $(cut -d= -f1 /tmp/rgw-ceph/rgw.env)
  ./cinder_s3.py backup vol.img --id B1 --volume-id V1 --object-size 1048576
  ./cinder_s3.py layout B1;  ./cinder_s3.py restore B1 out.img
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cinder_objstore  # noqa: E402  (applies eventlet.monkey_patch() first, as cinder-backup does)

if __name__ == "__main__":
    cinder_objstore.main("s3")
