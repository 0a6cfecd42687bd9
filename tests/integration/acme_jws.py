#!/usr/bin/python3
# JWS requests certbot never sends, for test_ca_acme: made with certbot's own
# ACME library (python3-acme, josepy), so the signatures are the real client's.
#   acme_jws.py account DIRECTORY [N]  N newAccount (1), no more (without EAB where it is required)
#   acme_jws.py replay DIRECTORY   a newAccount sent twice with one nonce; a JWS for
#                                  another URL; a JWS whose signature was altered
#   acme_jws.py http01 DIRECTORY WEBROOT
#                                  orders, answers http-01 from files in WEBROOT (served by a
#                                  static server): the right key authorization with trailing
#                                  white space, a wrong one, one over 1 KB
#   acme_jws.py expiry DIRECTORY SECONDS
#                                  an order left alone past its lifetime: invalid, its
#                                  authorization expired, nothing validated or finalized
#   acme_jws.py rollover DIRECTORY an account's key rolled over (RFC 8555 7.3.5), then
#                                  used; the old key refused
#   acme_jws.py algs DIRECTORY     accounts with ES384 (P-384) and ES512 (P-521) keys, each
#                                  then ordering with its kid; ES384 claimed for a P-256 key
#                                  refused, the problem listing the algs served
#   acme_jws.py eab DIRECTORY KID HMAC_KEY
#                                  a newAccount bound to an EAB key (RFC 8555 7.3.4); refused:
#                                  the problem's detail too
#   acme_jws.py shared DIRECTORY ADDR_B HTTP01_PORT
#                                  two serve processes on one PostgreSQL CA, B (at ADDR_B,
#                                  HOST:PORT) reached under A's name as behind a load balancer: a
#                                  nonce taken by A replayed at B, B's nonce good at A, an order
#                                  made through A validated (http-01 answered here on
#                                  HTTP01_PORT) and finalized through B, its certificate from A
# Each step prints "NAME STATUS TYPE" (TYPE: the problem's, or "-").
import http.server
import json
import sys
import threading
import time
import urllib.parse

import josepy as jose
import requests
from acme import jws as acme_jws
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

JOSE = {"Content-Type": "application/jose+json"}


def new_key():
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


class Client:
    def __init__(self, directory):
        self.dir = requests.get(directory, timeout=30).json()

    def nonce(self):
        return requests.head(self.dir["newNonce"], timeout=30).headers["Replay-Nonce"]

    def sign(self, key, payload, url, nonce=None, kid=None, jwk=True, alg=jose.ES256):
        n = jose.b64decode(nonce if nonce is not None else self.nonce())
        data = b"" if payload is None else json.dumps(payload).encode()
        if kid:
            return acme_jws.JWS.sign(data, key=key, alg=alg, nonce=n, url=url, kid=kid).json_dumps()
        return acme_jws.JWS.sign(data, key=key, alg=alg, nonce=n, url=url).json_dumps()

    def post(self, url, body):
        return requests.post(url, data=body, headers=JOSE, timeout=30)


def show(name, r):
    kind = "-"
    if r.headers.get("Content-Type", "").startswith("application/problem+json"):
        kind = r.json().get("type", "?")
    print(name, r.status_code, kind, flush=True)
    return r


def replay(c):
    key = new_key()
    url = c.dir["newAccount"]
    body = c.sign(key, {"termsOfServiceAgreed": True}, url)
    show("first", c.post(url, body))
    show("replayed", c.post(url, body))
    show("other-url", c.post(c.dir["newOrder"], c.sign(new_key(), {"termsOfServiceAgreed": True}, url)))
    bad = json.loads(c.sign(new_key(), {"termsOfServiceAgreed": True}, url))
    sig = bytearray(jose.b64decode(bad["signature"]))
    sig[5] ^= 1
    bad["signature"] = jose.b64encode(bytes(sig)).decode()
    show("bad-signature", c.post(url, json.dumps(bad)))
    show("unknown-nonce", c.post(url, c.sign(new_key(), {}, url, nonce="AAAAAAAAAAAAAAAAAAAAAA")))


def algs(c):
    url = c.dir["newAccount"]
    order = {"identifiers": [{"type": "dns", "value": "algs.acme.test"}]}
    for name, curve, alg in (("es384", ec.SECP384R1(), jose.ES384), ("es512", ec.SECP521R1(), jose.ES512)):
        key = jose.JWKEC(key=ec.generate_private_key(curve))
        r = show(name, c.post(url, c.sign(key, {"termsOfServiceAgreed": True}, url, alg=alg)))
        kid = r.headers.get("Location")
        show(name + "-order", c.post(c.dir["newOrder"], c.sign(key, order, c.dir["newOrder"], kid=kid, alg=alg)))
    key = new_key()
    r = show("es384-p256", c.post(url, c.sign(key, {"termsOfServiceAgreed": True}, url, alg=jose.ES384)))
    print("algorithms", ",".join(r.json().get("algorithms", [])), flush=True)


def eab(c, kid, hmac_key):
    key = new_key()
    url = c.dir["newAccount"]
    binding = messages.ExternalAccountBinding.from_data(account_public_key=key.public_key(), kid=kid,
                                                        hmac_key=hmac_key, directory=c.dir)
    r = show("eab-account", c.post(url, c.sign(key, {"termsOfServiceAgreed": True, "externalAccountBinding": binding},
                                               url)))
    if r.status_code >= 400:
        print("detail", r.json().get("detail"), flush=True)


def account(c, n=1):
    url = c.dir["newAccount"]
    for _ in range(int(n)):
        show("account", c.post(url, c.sign(new_key(), {"termsOfServiceAgreed": True}, url)))


def http01(c, webroot):
    key = new_key()
    r = c.post(c.dir["newAccount"], c.sign(key, {"termsOfServiceAgreed": True}, c.dir["newAccount"]))
    acct = r.headers["Location"]
    thumb = jose.b64encode(key.thumbprint()).decode()
    for kind in ("good", "wrong", "big"):
        r = c.post(c.dir["newOrder"], c.sign(key, {"identifiers": [{"type": "dns", "value": kind + ".acme.test"}]},
                                             c.dir["newOrder"], kid=acct))
        authz = r.json()["authorizations"][0]
        chall = next(ch for ch in c.post(authz, c.sign(key, None, authz, kid=acct)).json()["challenges"]
                     if ch["type"] == "http-01")
        text = {"good": chall["token"] + "." + thumb + "\r\n \n",
                "wrong": chall["token"] + "." + ("B" if thumb[0] != "B" else "C") + thumb[1:],
                "big": chall["token"] + "." + thumb + " " * 2000}[kind]
        with open(f"{webroot}/.well-known/acme-challenge/{chall['token']}", "w") as f:
            f.write(text)
        c.post(chall["url"], c.sign(key, {}, chall["url"], kid=acct))
        for _ in range(600):
            a = c.post(authz, c.sign(key, None, authz, kid=acct)).json()
            if a["status"] != "pending":
                break
            time.sleep(0.1)
        ch = next(ch for ch in a["challenges"] if ch["type"] == "http-01")
        err = ch.get("error", {})
        print(kind, a["status"], err.get("type", "-"), err.get("detail", ""), flush=True)


def expiry(c, wait):
    key = new_key()
    acct = c.post(c.dir["newAccount"], c.sign(key, {"termsOfServiceAgreed": True},
                                              c.dir["newAccount"])).headers["Location"]
    r = c.post(c.dir["newOrder"], c.sign(key, {"identifiers": [{"type": "dns", "value": "late.acme.test"}]},
                                         c.dir["newOrder"], kid=acct))
    order, body = r.headers["Location"], r.json()
    print("order", body["status"], flush=True)
    time.sleep(float(wait))
    print("order-later", c.post(order, c.sign(key, None, order, kid=acct)).json()["status"], flush=True)
    authz = body["authorizations"][0]
    a = c.post(authz, c.sign(key, None, authz, kid=acct)).json()
    print("authz-later", a["status"], flush=True)
    ch = next(ch for ch in a["challenges"] if ch["type"] == "http-01")
    print("challenge-later", c.post(ch["url"], c.sign(key, {}, ch["url"], kid=acct)).json()["status"], flush=True)
    show("finalize-later", c.post(body["finalize"], c.sign(key, {"csr": "AA"}, body["finalize"], kid=acct)))


def rollover(c):
    old, new = new_key(), new_key()
    r = show("account", c.post(c.dir["newAccount"], c.sign(old, {"termsOfServiceAgreed": True},
                                                          c.dir["newAccount"])))
    acct = r.headers["Location"]
    url = c.dir["keyChange"]
    inner = acme_jws.JWS.sign(json.dumps({"account": acct, "oldKey": old.public_key().to_json()}).encode(),
                              key=new, alg=jose.ES256, nonce=None, url=url).json_dumps()
    show("key-change", c.post(url, c.sign(old, json.loads(inner), url, kid=acct)))
    r = show("new-key", c.post(acct, c.sign(new, None, acct, kid=acct)))
    orders = r.json()["orders"]
    r = c.post(c.dir["newOrder"], c.sign(new, {"identifiers": [{"type": "dns", "value": "o.acme.test"}]},
                                         c.dir["newOrder"], kid=acct))
    listed = c.post(orders, c.sign(new, None, orders, kid=acct)).json()["orders"]
    print("orders-listed", r.headers["Location"] in listed and len(listed) == 1, flush=True)
    show("old-key", c.post(acct, c.sign(old, None, acct, kid=acct)))
    show("deactivate", c.post(acct, c.sign(new, {"status": "deactivated"}, acct, kid=acct)))
    show("after-deactivate", c.post(acct, c.sign(new, None, acct, kid=acct)))


def shared(c, addr_b, http01_port):
    """c is A's; at(url) is url sent to B with A's name in Host, as a load balancer would."""
    a_host = urllib.parse.urlsplit(c.dir["newAccount"]).netloc

    def at_b(url):
        return urllib.parse.urlsplit(url)._replace(netloc=addr_b).geturl()

    def post_b(url, body):
        return requests.post(at_b(url), data=body, headers={**JOSE, "Host": a_host}, timeout=30)

    key = new_key()
    url = c.dir["newAccount"]
    body = c.sign(key, {"termsOfServiceAgreed": True}, url)
    r = show("account-at-a", c.post(url, body))
    acct = r.headers["Location"]
    show("replayed-at-b", post_b(url, body))
    b_nonce = requests.head(at_b(c.dir["newNonce"]), headers={"Host": a_host}, timeout=30).headers["Replay-Nonce"]
    show("b-nonce-at-a", c.post(acct, c.sign(key, None, acct, nonce=b_nonce, kid=acct)))
    name = "shared.acme.test"
    order_url = c.dir["newOrder"]
    r = show("order-at-a", c.post(order_url, c.sign(key, {"identifiers": [{"type": "dns", "value": name}]},
                                                     order_url, kid=acct)))
    order, body = r.headers["Location"], r.json()
    authz = body["authorizations"][0]
    chall = next(ch for ch in post_b(authz, c.sign(key, None, authz, kid=acct)).json()["challenges"]
                 if ch["type"] == "http-01")
    answer = (chall["token"] + "." + jose.b64encode(key.thumbprint()).decode()).encode()

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/.well-known/acme-challenge/" + chall["token"]
            self.send_response(200 if ok else 404)
            self.end_headers()
            if ok:
                self.wfile.write(answer)

        def log_message(self, *args):
            pass

    web = http.server.HTTPServer(("127.0.0.1", int(http01_port)), Answer)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    show("challenge-at-b", post_b(chall["url"], c.sign(key, {}, chall["url"], kid=acct)))
    for _ in range(300):
        o = c.post(order, c.sign(key, None, order, kid=acct)).json()
        if o["status"] != "pending":
            break
        time.sleep(0.1)
    web.shutdown()
    print("order-at-a", o["status"], flush=True)
    csr_key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(csr_key, hashes.SHA256()))
    der = jose.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()
    show("finalize-at-b", post_b(body["finalize"], c.sign(key, {"csr": der}, body["finalize"], kid=acct)))
    for _ in range(300):
        o = c.post(order, c.sign(key, None, order, kid=acct)).json()
        if o["status"] != "processing":
            break
        time.sleep(0.1)
    print("finalized-at-a", o["status"], flush=True)
    r = c.post(o.get("certificate", order), c.sign(key, None, o.get("certificate", order), kid=acct))
    print("certificate-at-a", r.status_code, "BEGIN CERTIFICATE" in r.text, flush=True)
    sys.stdout.write(r.text)


if __name__ == "__main__":
    if sys.argv[1] == "http01":
        http01(Client(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "expiry":
        expiry(Client(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "shared":
        shared(Client(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "eab":
        eab(Client(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "account" and len(sys.argv) > 3:
        account(Client(sys.argv[2]), sys.argv[3])
    else:
        {"account": account, "replay": replay, "rollover": rollover, "algs": algs}[sys.argv[1]](Client(sys.argv[2]))
