#!/usr/bin/python3
# bench/enroll-acme's load: C processes, each with an ACME account of its own (certbot's ACME
# library), ordering certificates end to end for SECONDS: newOrder, the authorization, the http-01
# challenge (the key authorization written to WEBROOT, which one static server answers from), polls
# every 20 ms, finalize with a fresh P-256 CSR (not sleeping a second first, as finalize_order does), the certificate downloaded. Prints "orders N seconds S
# cpu C" (C: this side's CPU seconds, all processes).
#   acme_load.py DIRECTORY WEBROOT SECONDS PROCESSES
import multiprocessing
import os
import resource
import sys
import time

import josepy as jose
import OpenSSL
from acme import client, crypto_util, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def worker(n, directory, webroot, secs, out):
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, user_agent="keyward-bench")
    acme = client.ClientV2(client.ClientV2.get_directory(directory, net), net)
    net.account = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    done, i, end = 0, 0, time.monotonic() + secs
    while time.monotonic() < end:
        name = f"w{n}-{i}.bench.test"
        i += 1
        pkey = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        order = acme.new_order(crypto_util.make_csr(pkey, [name]))
        for authz in order.authorizations:
            challb = next(c for c in authz.body.challenges if c.chall.typ == "http-01")
            resp, validation = challb.response_and_validation(key)
            with open(os.path.join(webroot, challb.chall.encode("token")), "w") as f:
                f.write(validation)
            acme.answer_challenge(challb, resp)
            while True:
                a, _ = acme.poll(authz)
                if a.body.status != messages.STATUS_PENDING:
                    break
                time.sleep(0.02)
            if a.body.status != messages.STATUS_VALID:
                raise SystemExit(f"{name}: {a.body.status}")
        # finalize as finalize_order does, without its second of sleep before the first poll
        csr = OpenSSL.crypto.load_certificate_request(OpenSSL.crypto.FILETYPE_PEM, order.csr_pem)
        body = messages.Order.from_json(acme._post(order.body.finalize, messages.CertificateRequest(
            csr=jose.ComparableX509(csr))).json())
        while body.status != messages.STATUS_VALID:
            if body.status == messages.STATUS_INVALID:
                raise SystemExit(f"{name}: {body.error}")
            time.sleep(0.02)
            body = messages.Order.from_json(acme._post_as_get(order.uri).json())
        if "BEGIN CERTIFICATE" not in acme._post_as_get(body.certificate).text:
            raise SystemExit(f"{name}: no certificate")
        done += 1
    out.put(done)


if __name__ == "__main__":
    directory, webroot, secs, procs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    q = multiprocessing.Queue()
    start = time.monotonic()
    ps = [multiprocessing.Process(target=worker, args=(n, directory, webroot, secs, q)) for n in range(procs)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    wall = time.monotonic() - start
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"orders {total} seconds {wall:.2f} cpu {ru.ru_utime + ru.ru_stime:.2f}")
