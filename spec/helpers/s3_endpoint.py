#!/usr/bin/python3
"""A small S3-compatible endpoint for the specs, the demo and the benchmarks (issue #21).

Every request's AWS Signature V4 is recomputed with Debian's python3-botocore (its S3SigV4Auth: the
canonical request, the string to sign, the signing key), never with the project's own signer, and the
x-amz-content-sha256 it signed is checked against the body actually received: a body one byte off, or short,
is refused and nothing is stored. Path-style addressing (http://127.0.0.1:<port>/bucket/key), and virtual-hosted
addressing for a Host of the form <bucket>.localhost[:port] (http://bucket.localhost:<port>/key: libcurl takes any
*.localhost name for loopback, no resolver needed).

Served: PUT, GET (Range), HEAD and DELETE of an object; HEAD of a bucket; ListObjectsV2 (GET /bucket?list-type=2,
what `aws s3 ls` and `aws s3 cp s3://...` use); ListBuckets (GET /). Multipart uploads answer NotImplemented:
give awscli a multipart_threshold above the sizes in play (spec/helpers/s3.lua writes such a config).
Errors are S3's XML with S3's codes and sentences.

Control, unsigned, on the same port under /_s3/ (no bucket name can start with "_"):
  GET  /_s3/ready                     200 once listening
  POST /_s3/fault    {"name": ..., "times": n, "method": "PUT", "match": "key part", ...}   {} clears
  POST /_s3/options  {"latency_ms": n, "capture_dir": "DIR" | ""}   capture: each request after it is kept as
                     DIR/<n>.json ({method, target, headers: [[name, value]...]}) and DIR/<n>.body, as received
  GET  /_s3/requests                  the log: [{method, path, host, bucket, key, status, bytes, code, ...}]
  POST /_s3/requests/clear
Faults: forbidden (403 AccessDenied), no_bucket (404 NoSuchBucket), error500 (500 InternalError),
retry_after (503 SlowDown, Retry-After: opts.seconds or 1), slow (opts.ms before answering, after the body),
cut (the connection closed after opts.after bytes of the body, default half, no answer), accept_short (the store
keeps only the first half of the body, as a broken store or proxy would: the signed payload hash refuses it).

Run: S3_ACCESS_KEY=... S3_SECRET_KEY=... s3_endpoint.py --dir DIR --bucket b [--bucket c] [--region r]
     [--port 0] [--port-file F] [--latency-ms n] [--session-token-env VAR]
The keys come from the environment, never the command line (ps shows it). The secret is never logged.
"""

import argparse
import base64
import calendar
import email.utils
import hashlib
import hmac
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from botocore.auth import EMPTY_SHA256_HASH, SIGV4_TIMESTAMP, UNSIGNED_PAYLOAD, S3SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials
from botocore.utils import percent_encode

CHUNK = 64 * 1024
SKEW = 15 * 60  # seconds, as S3
AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
VHOST = re.compile(r"^([a-z0-9][a-z0-9.-]*)\.localhost(?::\d+)?$")

MESSAGES = {
    "AccessDenied": (403, "Access Denied"),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you "
                                   "provided. Check your key and signing method."),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current time is too large."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not match what was "
                                       "computed."),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidToken": (400, "The provided token is malformed or otherwise invalid."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the Content-Length HTTP "
                            "header"),
    "BadDigest": (400, "The Content-MD5 you specified did not match what we received."),
    "InvalidURI": (400, "Couldn't parse the specified URI."),
    "InvalidArgument": (400, "Invalid Argument"),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "NotImplemented": (501, "A header you provided implies functionality that is not implemented"),
    "SlowDown": (503, "Please reduce your request rate."),
}


class S3Error(Exception):
    def __init__(self, code, message=None, extra=None, headers=None):
        super().__init__(code)
        self.code = code
        self.status, default = MESSAGES[code]
        self.message = message or default
        self.extra = extra or {}
        self.headers = headers or {}


class Verifier(S3SigV4Auth):
    """botocore's S3 signer, told which headers the request says it signed (SignedHeaders)."""

    def __init__(self, credentials, region, signed_names):
        super().__init__(credentials, "s3", region)
        self._signed_names = signed_names

    def headers_to_sign(self, request):
        chosen = HTTPHeaders()
        for name in self._signed_names:
            for value in request.headers.get_all(name) or []:
                chosen[name] = value
        return chosen


def object_file(root, bucket, key):
    # one flat file a key (keys hold "/" and anything else): every byte but [A-Za-z0-9_.~-] as %XX
    return os.path.join(root, bucket, quote(key, safe=""))


def iso8601(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


class State:
    def __init__(self, args):
        self.root = os.path.abspath(args.dir)
        self.buckets = set(args.bucket)
        self.region = args.region
        self.access_key = os.environ.get("S3_ACCESS_KEY", "")
        self.secret_key = os.environ.get("S3_SECRET_KEY", "")
        self.token = os.environ.get(args.session_token_env) if args.session_token_env else None
        self.latency = args.latency_ms / 1000.0
        self.fault = None
        self.capture_dir = None
        self.captured = 0
        self.log = []
        self.lock = threading.Lock()
        for b in self.buckets:
            os.makedirs(os.path.join(self.root, b), exist_ok=True)
        os.makedirs(os.path.join(self.root, ".tmp"), exist_ok=True)
        os.makedirs(os.path.join(self.root, ".meta"), exist_ok=True)

    def take_fault(self, method, key):
        """The fault that applies to this request (counting it down), or None."""
        with self.lock:
            f = self.fault
            if not f:
                return None
            if f.get("method") and f["method"] != method:
                return None
            if f.get("match") and (key is None or f["match"] not in key):
                return None
            if f.get("times") is not None:
                f["times"] -= 1
                if f["times"] <= 0:
                    self.fault = None
            return dict(f)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ctc-s3-endpoint"
    state = None  # set in main

    def virtual_bucket(self):
        """The bucket a virtual-hosted request names in its Host (<bucket>.localhost[:port]), else None."""
        m = VHOST.match((self.headers.get("Host") or "").lower())
        return m.group(1) if m else None

    def log_message(self, *args):  # quiet: the request log is /_s3/requests
        pass

    # Expect: 100-continue is answered only once the signature is checked, so a refused upload is not sent
    def handle_expect_100(self):
        self.expect_continue = True
        return True

    def do_GET(self): self.dispatch()
    def do_PUT(self): self.dispatch()
    def do_HEAD(self): self.dispatch()
    def do_DELETE(self): self.dispatch()
    def do_POST(self): self.dispatch()

    # ------------------------------------------------------------------ answering
    def answer(self, status, body=b"", headers=None, content_type="application/xml"):
        self.logged(status)
        self.send_response(status)
        self.send_header("x-amz-request-id", self.request_id)
        if body or self.command != "HEAD":
            self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def answer_error(self, err):
        self.entry["code"] = err.code
        if self.body_pending:
            # the body was not read: drain a small one so the connection stays usable, else close it
            if self.expect_continue or self.body_pending > 16 * 1024 * 1024:
                self.close_connection = True
            else:
                self.drain(self.body_pending)
        parts = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message>"
                 % (err.code, escape(err.message))]
        for k, v in err.extra.items():
            parts.append("<%s>%s</%s>" % (k, escape(str(v)), k))
        parts.append("<Resource>%s</Resource><RequestId>%s</RequestId></Error>"
                     % (escape(self.path.split("?", 1)[0]), self.request_id))
        headers = dict(err.headers)
        if self.command == "HEAD":
            headers["Content-Length"] = "0"
        self.answer(err.status, "".join(parts).encode(), headers)

    def drain(self, n):
        while n > 0:
            got = self.rfile.read(min(CHUNK, n))
            if not got:
                self.close_connection = True
                return
            n -= len(got)
        self.body_pending = 0

    def send_json(self, value, status=200):
        self.answer(status, json.dumps(value).encode(), content_type="application/json")

    # ------------------------------------------------------------------ the request
    def dispatch(self):
        st = self.state
        self.request_id = uuid.uuid4().hex[:16].upper()
        raw_path, _, raw_query = self.path.partition("?")
        self.entry = {"method": self.command, "path": raw_path, "query": raw_query, "status": None, "bytes": 0,
                      "host": self.headers.get("Host"), "started": time.time()}
        self.expect_continue = getattr(self, "expect_continue", False)
        te = self.headers.get("Transfer-Encoding")
        self.vbucket = self.virtual_bucket()
        self.is_s3 = not (raw_path.startswith("/_s3/") and self.vbucket is None)
        try:
            self.body_pending = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.body_pending = 0
        try:
            if not self.is_s3:
                self.control(raw_path)
                return
            if te:
                raise S3Error("MissingContentLength")
            if self.body_pending < 0:
                raise S3Error("InvalidArgument", "Content-Length is negative.")
            self.handle_s3(raw_path, raw_query)
        except S3Error as err:
            self.answer_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a defect of this endpoint: say so, as S3 would, and keep serving
            sys.stderr.write("s3_endpoint: %r\n" % (exc,))
            self.close_connection = True
            try:
                self.answer_error(S3Error("InternalError"))
            except OSError:
                pass
        finally:
            self.expect_continue = False
            if self.is_s3:
                self.log_now()  # one that got no answer (a cut, a defect): logged once it ends

    def logged(self, status):
        # an S3 request is in the log before its answer leaves: a client that got the answer and asks for the
        # log at once (another thread serves it) finds the request there
        self.entry["status"] = status
        if self.is_s3:
            self.log_now()

    def log_now(self):
        if not self.entry.get("finished"):
            self.entry["finished"] = time.time()
            with self.state.lock:
                self.state.log.append(self.entry)

    def control(self, path):
        st = self.state
        body = {}
        if self.body_pending:
            if self.expect_continue:
                self.send_response_only(100)
                self.end_headers()
            raw = self.rfile.read(self.body_pending)
            self.body_pending = 0
            body = json.loads(raw or b"{}")
        if path == "/_s3/ready":
            self.send_json({"ok": True})
        elif path == "/_s3/fault":
            with st.lock:
                st.fault = body if body.get("name") else None
            self.send_json({"fault": st.fault})
        elif path == "/_s3/options":
            if "latency_ms" in body:
                st.latency = float(body["latency_ms"]) / 1000.0
            if "capture_dir" in body:
                st.capture_dir = body["capture_dir"] or None
            self.send_json({"latency_ms": st.latency * 1000.0, "capture_dir": st.capture_dir})
        elif path == "/_s3/requests":
            with st.lock:
                self.send_json(list(st.log))
        elif path == "/_s3/requests/clear":
            with st.lock:
                st.log = []
            self.send_json({"ok": True})
        else:
            self.send_json({"error": "no such control path"}, 404)

    def handle_s3(self, raw_path, raw_query):
        st = self.state
        try:
            path = unquote(raw_path, errors="strict")
            params = [(unquote(k, errors="strict"), unquote(v, errors="strict"))
                      for k, _, v in (p.partition("=") for p in raw_query.split("&") if p)]
        except UnicodeDecodeError:
            raise S3Error("InvalidURI")
        self.capture = None
        if st.capture_dir:
            with st.lock:
                st.captured += 1
                self.capture = os.path.join(st.capture_dir, str(st.captured))
            with open(self.capture + ".json", "w") as f:
                json.dump({"method": self.command, "target": self.path, "headers": list(self.headers.items())}, f)
            open(self.capture + ".body", "wb").close()
            self.entry["capture"] = self.capture
        if self.vbucket is not None:
            bucket, key = self.vbucket, path[1:]  # virtual-hosted: the whole path is the key
        else:
            bucket, _, key = path[1:].partition("/")
        self.entry["bucket"] = bucket or None
        self.entry["key"] = key or None
        query = dict(params)

        fault = st.take_fault(self.command, key or None)
        if fault:
            self.entry["fault"] = fault["name"]
            simple = {"forbidden": "AccessDenied", "no_bucket": "NoSuchBucket", "error500": "InternalError"}
            if fault["name"] in simple:
                raise S3Error(simple[fault["name"]], extra={"BucketName": bucket} if fault["name"] == "no_bucket"
                              else None)
            if fault["name"] == "retry_after":
                raise S3Error("SlowDown", headers={"Retry-After": str(fault.get("seconds", 1))})

        payload_hash = self.verify(path, params)

        if bucket and bucket not in st.buckets:
            raise S3Error("NoSuchBucket", extra={"BucketName": bucket})
        if any(k in query for k in ("uploads", "uploadId", "partNumber")):
            raise S3Error("NotImplemented", "Multipart uploads are not implemented by this test endpoint.")

        if not bucket:
            if self.command != "GET":
                raise S3Error("MethodNotAllowed")
            self.check_empty_body(payload_hash)
            self.list_buckets()
        elif not key:
            self.check_empty_body(payload_hash)
            self.delay(fault)
            if self.command == "HEAD":
                self.answer(200, headers={"x-amz-bucket-region": st.region})
            elif self.command == "GET":
                self.list_objects(bucket, query)
            else:
                raise S3Error("MethodNotAllowed")
        elif self.command == "PUT":
            self.put_object(bucket, key, payload_hash, fault)
        elif self.command in ("GET", "HEAD"):
            self.check_empty_body(payload_hash)
            self.delay(fault)
            self.get_object(bucket, key)
        elif self.command == "DELETE":
            self.check_empty_body(payload_hash)
            self.delay(fault)
            try:
                os.remove(object_file(st.root, bucket, key))
            except FileNotFoundError:
                pass
            self.answer(204)
        else:
            raise S3Error("MethodNotAllowed")

    def delay(self, fault):
        wait = self.state.latency
        if fault and fault["name"] == "slow":
            wait += float(fault.get("ms", 5000)) / 1000.0
        if wait > 0:
            time.sleep(wait)

    # ------------------------------------------------------------------ Signature V4, by botocore
    def verify(self, path, params):
        """Checks the Authorization header; returns the signed x-amz-content-sha256 (raises S3Error)."""
        st = self.state
        h = self.headers
        auth = h.get("Authorization")
        if not auth:
            raise S3Error("AccessDenied")
        m = AUTH_RE.match(auth.strip())
        if not m:
            raise S3Error("AuthorizationHeaderMalformed")
        credential, signed, provided = m.group(1), m.group(2), m.group(3)
        scope = credential.split("/")
        if len(scope) != 5 or scope[3] != "s3" or scope[4] != "aws4_request":
            raise S3Error("AuthorizationHeaderMalformed", "The authorization header is malformed; the Credential "
                                                          "is mal-formed.")
        access_key, day, region = scope[0], scope[1], scope[2]
        if access_key != st.access_key:
            raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key})
        if region != st.region:
            raise S3Error("AuthorizationHeaderMalformed", "The authorization header is malformed; the region '%s' "
                          "is wrong; expecting '%s'" % (region, st.region), {"Region": st.region})
        amz_date = h.get("x-amz-date")
        if amz_date is not None:
            try:
                when = calendar.timegm(time.strptime(amz_date, SIGV4_TIMESTAMP))
            except ValueError:
                raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
            timestamp = amz_date
        elif h.get("Date"):
            parsed = email.utils.parsedate_tz(h.get("Date"))
            if not parsed:
                raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
            when = email.utils.mktime_tz(parsed)
            timestamp = time.strftime(SIGV4_TIMESTAMP, time.gmtime(when))
        else:
            raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        if timestamp[:8] != day:
            raise S3Error("AuthorizationHeaderMalformed", "The authorization header is malformed; Invalid credential "
                                                          "date. Date is not the same as X-Amz-Date.")
        if abs(time.time() - when) > SKEW:
            raise S3Error("RequestTimeTooSkewed", extra={"RequestTime": timestamp})
        names = signed.split(";")
        if "host" not in names:
            raise S3Error("AccessDenied", "Host must be a signed header.")
        unsigned = sorted({k.lower() for k in h.keys() if k.lower().startswith("x-amz-")} - set(names))
        if unsigned:
            raise S3Error("AccessDenied", "There were headers present in the request which were not signed",
                          {"HeadersNotSigned": ", ".join(unsigned)})
        payload_hash = h.get("x-amz-content-sha256")
        if payload_hash is None:
            raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        token = h.get("x-amz-security-token")
        if token != st.token:
            raise S3Error("InvalidToken" if token else "AccessDenied")

        # the canonical URI as S3 defines it: the key's segments each encoded once (botocore's percent_encode)
        canonical_path = "/".join(percent_encode(seg) for seg in path.split("/"))
        request = AWSRequest(method=self.command, url="http://%s%s" % (h.get("Host", ""), canonical_path),
                             headers=h, params=params)
        request.context["timestamp"] = timestamp
        signer = Verifier(Credentials(access_key, st.secret_key, st.token), region, names)
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        expected = signer.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, provided):
            raise S3Error("SignatureDoesNotMatch", extra={
                "AWSAccessKeyId": access_key, "StringToSign": string_to_sign, "SignatureProvided": provided,
                "CanonicalRequest": canonical})
        if payload_hash != UNSIGNED_PAYLOAD and not HEX64.match(payload_hash):
            if payload_hash.startswith("STREAMING-"):
                raise S3Error("NotImplemented", "aws-chunked uploads are not implemented by this test endpoint.")
            raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                                             "or a valid sha256 value.")
        return payload_hash

    def check_empty_body(self, payload_hash):
        if self.body_pending:
            raise S3Error("InvalidRequest", "This request takes no body.")
        if payload_hash not in (EMPTY_SHA256_HASH, UNSIGNED_PAYLOAD):
            raise S3Error("XAmzContentSHA256Mismatch", extra={"ClientComputedContentSHA256": payload_hash,
                                                               "S3ComputedContentSHA256": EMPTY_SHA256_HASH})

    # ------------------------------------------------------------------ objects
    def put_object(self, bucket, key, payload_hash, fault):
        st = self.state
        if self.headers.get("Content-Length") is None:
            raise S3Error("MissingContentLength")
        if payload_hash == UNSIGNED_PAYLOAD and self.body_pending:
            raise S3Error("InvalidRequest", "This test endpoint takes only a signed payload: x-amz-content-sha256 "
                                            "must be the body's SHA-256.")
        size = self.body_pending
        if self.expect_continue:
            self.send_response_only(100)
            self.end_headers()
            self.wfile.flush()
        cut_after = None
        if fault and fault["name"] == "cut":
            cut_after = int(fault.get("after", size // 2))
        keep = size // 2 if fault and fault["name"] == "accept_short" else size
        sha, md5 = hashlib.sha256(), hashlib.md5()
        tmp = os.path.join(st.root, ".tmp", uuid.uuid4().hex)
        got = 0
        capture = open(self.capture + ".body", "wb") if self.capture else None
        try:
            with open(tmp, "wb") as out:
                while got < size:
                    want = min(CHUNK, size - got)
                    if cut_after is not None:
                        want = min(want, cut_after - got)
                        if want <= 0:
                            # the connection cut mid-body: no answer at all
                            self.entry["bytes"] = got
                            self.entry["code"] = "cut"
                            self.log_now()  # before the client can see the close and ask for the log
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                    chunk = self.rfile.read(want)
                    if not chunk:
                        break
                    if capture:
                        capture.write(chunk)
                    stored = chunk[:max(0, keep - got)]
                    sha.update(stored)
                    md5.update(stored)
                    out.write(stored)
                    got += len(chunk)
            self.body_pending = size - got
            self.entry["bytes"] = got
            if got < size:
                self.close_connection = True
                raise S3Error("IncompleteBody", extra={"NumberBytesExpected": size, "NumberBytesProvided": got})
            computed = sha.hexdigest()
            if payload_hash != UNSIGNED_PAYLOAD and computed != payload_hash:
                raise S3Error("XAmzContentSHA256Mismatch", extra={"ClientComputedContentSHA256": payload_hash,
                                                                   "S3ComputedContentSHA256": computed})
            content_md5 = self.headers.get("Content-MD5")
            if content_md5 is not None and content_md5 != base64.b64encode(md5.digest()).decode():
                raise S3Error("BadDigest", extra={"ExpectedDigest": content_md5})
            self.delay(fault)
            etag = '"%s"' % md5.hexdigest()
            meta = {"etag": etag, "content_type": self.headers.get("Content-Type") or "binary/octet-stream",
                    "sha256": computed}
            with open(tmp + ".meta", "w") as mf:
                json.dump(meta, mf)
            os.replace(tmp + ".meta", os.path.join(st.root, ".meta", bucket + "." + quote(key, safe="")))
            os.replace(tmp, object_file(st.root, bucket, key))
        finally:
            if capture:
                capture.close()
            if os.path.exists(tmp):
                os.remove(tmp)
        self.answer(200, headers={"ETag": etag})

    def meta(self, bucket, key):
        try:
            with open(os.path.join(self.state.root, ".meta", bucket + "." + quote(key, safe=""))) as mf:
                return json.load(mf)
        except (OSError, ValueError):
            return {}

    def get_object(self, bucket, key):
        name = object_file(self.state.root, bucket, key)
        try:
            f = open(name, "rb")
        except OSError:
            raise S3Error("NoSuchKey", extra={"Key": key})
        with f:
            size = os.fstat(f.fileno()).st_size
            meta = self.meta(bucket, key)
            headers = {"ETag": meta.get("etag", '""'), "Accept-Ranges": "bytes",
                       "Last-Modified": email.utils.formatdate(os.fstat(f.fileno()).st_mtime, usegmt=True)}
            first, last, status = 0, size - 1, 200
            rng = self.headers.get("Range")
            if rng:
                m = re.match(r"^bytes=(\d*)-(\d*)$", rng.strip())
                if m and (m.group(1) or m.group(2)):
                    if m.group(1):
                        first = int(m.group(1))
                        last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                    else:
                        first = max(0, size - int(m.group(2)))
                    if first >= size or first > last:
                        raise S3Error("InvalidRange", extra={"RangeRequested": rng})
                    status = 206
                    headers["Content-Range"] = "bytes %d-%d/%d" % (first, last, size)
            length = last - first + 1 if size else 0
            headers["Content-Length"] = str(length)
            self.logged(status)
            self.send_response(status)
            self.send_header("x-amz-request-id", self.request_id)
            self.send_header("Content-Type", meta.get("content_type", "binary/octet-stream"))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command == "GET":
                f.seek(first)
                left = length
                while left > 0:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def list_buckets(self):
        items = "".join("<Bucket><Name>%s</Name><CreationDate>%s</CreationDate></Bucket>"
                        % (escape(b), iso8601(0)) for b in sorted(self.state.buckets))
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult "
                "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>ctc</ID><DisplayName>ctc</DisplayName>"
                "</Owner><Buckets>%s</Buckets></ListAllMyBucketsResult>" % items)
        self.answer(200, body.encode())

    def list_objects(self, bucket, q):
        if q.get("list-type") != "2":
            raise S3Error("NotImplemented", "Only ListObjectsV2 (list-type=2) is implemented by this test endpoint.")
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        url = q.get("encoding-type") == "url"
        enc = (lambda s: quote(s, safe="/")) if url else (lambda s: s)
        try:
            max_keys = int(q.get("max-keys", "1000"))
        except ValueError:
            raise S3Error("InvalidArgument", "Provided max-keys not an integer or within integer range")
        after = q.get("start-after", "")
        token = q.get("continuation-token")
        if token:
            try:
                after = max(after, base64.b64decode(token).decode())
            except ValueError:
                raise S3Error("InvalidArgument", "The continuation token provided is incorrect")
        root = os.path.join(self.state.root, bucket)
        keys = sorted(unquote(n) for n in os.listdir(root))
        contents, prefixes, last, truncated = [], [], None, False
        for k in keys:
            if not k.startswith(prefix) or k <= after:
                continue
            if delimiter:
                cut = k.find(delimiter, len(prefix))
                if cut >= 0:
                    cp = k[:cut + len(delimiter)]
                    if (prefixes and prefixes[-1] == cp) or cp <= after:
                        continue
                    if len(contents) + len(prefixes) >= max_keys:
                        truncated = True
                        break
                    prefixes.append(cp)
                    last = cp + "\uffff"  # past every key under this prefix
                    continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            st = os.stat(os.path.join(root, quote(k, safe="")))
            contents.append((k, st))
            last = k
        parts = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult "
                 "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>%s</Name><Prefix>%s</Prefix>"
                 "<KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys><IsTruncated>%s</IsTruncated>"
                 % (escape(bucket), escape(enc(prefix)), len(contents) + len(prefixes), max_keys,
                    "true" if truncated else "false")]
        if delimiter:
            parts.append("<Delimiter>%s</Delimiter>" % escape(enc(delimiter)))
        if url:
            parts.append("<EncodingType>url</EncodingType>")
        if token:
            parts.append("<ContinuationToken>%s</ContinuationToken>" % escape(token))
        if q.get("start-after"):
            parts.append("<StartAfter>%s</StartAfter>" % escape(enc(q["start-after"])))
        if truncated and last is not None:
            parts.append("<NextContinuationToken>%s</NextContinuationToken>"
                         % base64.b64encode(last.encode()).decode())
        for k, st in contents:
            parts.append("<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>%s</ETag><Size>%d</Size>"
                         "<StorageClass>STANDARD</StorageClass></Contents>"
                         % (escape(enc(k)), iso8601(st.st_mtime), escape(self.meta(bucket, k).get("etag", '""')),
                            st.st_size))
        for p in prefixes:
            parts.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % escape(enc(p)))
        parts.append("</ListBucketResult>")
        self.answer(200, "".join(parts).encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def main():
    ap = argparse.ArgumentParser(description="a signature-checking S3 endpoint for tests")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--session-token-env")
    args = ap.parse_args()
    Handler.state = State(args)
    httpd = Server(("127.0.0.1", args.port), Handler)
    port = httpd.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(args.port_file + ".tmp", args.port_file)
    else:
        print(port, flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
