#!/usr/bin/env bash
# Development PKI for RAUC bundles: a CA (the keyring the image trusts) and a
# signing certificate issued by it. Keys stay under the given directory
# (default .homesec/pki/, ignored by git) and are never committed.
#
#   image/pki.sh [DIR]      creates DIR/{ca.cert.pem,ca.key.pem,signing.cert.pem,signing.key.pem}
#                           (existing files are kept); prints DIR
#
# The signing certificate has no extendedKeyUsage: RAUC 1.8 refuses a
# codeSigning EKU ("unsuitable certificate purpose").
# Production: keep the CA offline, and pass your own files to make:
#   make image  RAUC_KEYRING=/path/ca.cert.pem
#   make bundle RAUC_KEY=/path/signing.key.pem (or a PKCS#11 URI) RAUC_CERT=/path/signing.cert.pem
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$repo/.homesec/pki}"
cn="${PKI_CN:-HomeSec development}"
mkdir -p "$dir"
chmod 0700 "$dir"
if [ -s "$dir/ca.cert.pem" ] && [ -s "$dir/signing.cert.pem" ] && [ -s "$dir/signing.key.pem" ]; then
    echo "$dir"
    exit 0
fi
cd "$dir"
cat > openssl.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_signing]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
CNF
openssl req -x509 -newkey rsa:4096 -nodes -days 3650 -config openssl.cnf -extensions v3_ca \
    -subj "/O=HomeSec/CN=$cn CA" -keyout ca.key.pem -out ca.cert.pem 2>/dev/null
openssl req -newkey rsa:4096 -nodes -config openssl.cnf \
    -subj "/O=HomeSec/CN=$cn signing" -keyout signing.key.pem -out signing.csr.pem 2>/dev/null
openssl x509 -req -in signing.csr.pem -CA ca.cert.pem -CAkey ca.key.pem -CAcreateserial -days 1825 \
    -extfile openssl.cnf -extensions v3_signing -out signing.cert.pem 2>/dev/null
rm -f signing.csr.pem
chmod 0600 ./*.key.pem
echo "pki.sh: created $dir (CA: ca.cert.pem, signing: signing.cert.pem/signing.key.pem)" >&2
echo "$dir"
