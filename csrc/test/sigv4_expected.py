#!/usr/bin/env python3
"""The expected values of csrc/test/test_crypto.c's SigV4 known-answer tests, computed by an
independent implementation (Python's hmac and hashlib, written apart from csrc/sigv4.c) on the
requests of AWS's S3 Signature V4 worked examples and of the aws-sig-v4-test-suite cases used.
Run: python3 csrc/test/sigv4_expected.py (prints one line per case: name, signature)."""
import hashlib
import hmac
from urllib.parse import quote

EMPTY = hashlib.sha256(b"").hexdigest()


def enc(s, slash):
    return quote(s.encode("utf-8") if isinstance(s, str) else s, safe="-._~" + ("/" if slash else ""))


def sign(method, path, query, headers, payload_hash, date, region, service, akid, secret):
    cq = "&".join(sorted(enc(k, False) + "=" + enc(v, False) for k, v in query))
    hs = {}
    for k, v in headers:
        hs.setdefault(k.lower(), []).append(" ".join(v.split()))
    names = sorted(hs)
    ch = "".join(n + ":" + ",".join(hs[n]) + "\n" for n in names)
    sh = ";".join(names)
    creq = "\n".join([method, enc(path, True), cq, ch, sh, payload_hash])
    scope = "/".join([date[:8], region, service, "aws4_request"])
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date[:8], region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


def s3(name, method, path, query, extra, payload_hash):
    date = "20130524T000000Z"
    headers = [("Host", "examplebucket.s3.amazonaws.com"), ("x-amz-date", date),
               ("x-amz-content-sha256", payload_hash)] + extra
    print(name, sign(method, path, query, headers, payload_hash, date, "us-east-1", "s3",
                     "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"))


def suite(name, method, path, query, extra, body=b""):
    date = "20150830T123600Z"
    headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", date)] + extra
    print(name, sign(method, path, query, headers, hashlib.sha256(body).hexdigest(), date, "us-east-1",
                     "service", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"))


s3("s3-get-object", "GET", "/test.txt", [], [("Range", "bytes=0-9")], EMPTY)
s3("s3-put-object", "PUT", "/test$file.text", [],
   [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")],
   hashlib.sha256(b"Welcome to Amazon S3.").hexdigest())
s3("s3-get-lifecycle", "GET", "/", [("lifecycle", "")], [], EMPTY)
s3("s3-list-objects", "GET", "/", [("max-keys", "2"), ("prefix", "J")], [], EMPTY)
suite("get-vanilla", "GET", "/", [], [])
suite("get-vanilla-query-order-key-case", "GET", "/", [("Param2", "value2"), ("Param1", "value1")], [])
suite("get-header-value-trim", "GET", "/", [], [("My-Header1", " value1"), ("My-Header2", ' "a   b   c"')])
suite("post-x-www-form-urlencoded", "POST", "/", [], [("Content-Type", "application/x-www-form-urlencoded")],
      b"Param1=value1")
suite("get-space", "GET", "/example space/", [], [])
suite("get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", [], [])
suite("get-utf8", "GET", "/\u1234", [], [])
