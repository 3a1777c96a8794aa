"""Checks the SigV4 query signatures of requests moto recorded, with botocore
(the AWS SDK's own signer) as the reference: for each request, botocore signs
the same method, URL and signed headers at the same time with the same
credentials, and the two signatures must be equal.

usage: s3_sigv4_check.py RECORDING ACCESS_KEY SECRET_KEY
Prints one line per request that fails, then `verified N`; exits 1 on any
failure or when no request was signed.
"""

import datetime
import json
import sys
from unittest import mock
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit, quote

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH_PARAMS = {
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
}


def expected_signature(entry, access_key, secret_key):
    url = urlsplit(entry["url"])
    params = parse_qsl(url.query, keep_blank_values=True)
    auth = dict(p for p in params if p[0] in AUTH_PARAMS)
    rest = [p for p in params if p[0] not in AUTH_PARAMS]
    scope = auth["X-Amz-Credential"].split("/")
    if scope[0] != access_key:
        return None, f"signed with key {scope[0]}"
    region = scope[2]
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    signed = auth["X-Amz-SignedHeaders"].split(";")
    query = urlencode(rest, quote_via=quote)
    request = AWSRequest(
        method=entry["method"],
        url=urlunsplit((url.scheme, url.netloc, url.path, query, "")),
        headers={h: headers[h] for h in signed if h != "host"},
    )
    token = auth.get("X-Amz-Security-Token")
    signer = botocore.auth.S3SigV4QueryAuth(
        Credentials(access_key, secret_key, token), "s3", region, expires=int(auth["X-Amz-Expires"])
    )
    when = datetime.datetime.strptime(auth["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        signer.add_auth(request)
    ours = dict(parse_qsl(urlsplit(request.url).query))["X-Amz-Signature"]
    return ours, None


def main():
    recording, access_key, secret_key = sys.argv[1:4]
    verified, failures = 0, []
    with open(recording) as f:
        for line in f:
            entry = json.loads(line)
            if "X-Amz-Signature=" not in entry["url"]:
                continue
            got = dict(parse_qsl(urlsplit(entry["url"]).query))["X-Amz-Signature"]
            want, why = expected_signature(entry, access_key, secret_key)
            where = f"{entry['method']} {urlsplit(entry['url']).path}"
            if why:
                failures.append(f"{where}: {why}")
            elif want != got:
                failures.append(f"{where}: signature {got}, botocore computes {want}")
            else:
                verified += 1
    for f in failures:
        print(f)
    print(f"verified {verified}")
    sys.exit(1 if failures or verified == 0 else 0)


if __name__ == "__main__":
    main()
