"""dpkg -x for hosts without dpkg: unpack a .deb's data.tar.* (an ar archive member) into DIR.
usage: python3 undeb.py FILE.deb DIR"""
import io
import sys
import tarfile

data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", f"{sys.argv[1]}: not an ar archive"
pos = 8
while pos < len(data):
    name, size = data[pos:pos + 16].decode().strip().rstrip("/"), int(data[pos + 48:pos + 58])
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        tarfile.open(fileobj=io.BytesIO(body)).extractall(sys.argv[2])
    pos += 60 + size + (size & 1)
