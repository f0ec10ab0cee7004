"""Raw-keyring fixtures (the Python S3EC has only a KMS keyring, so these are built by hand with
`cryptography`, following the Java S3EC's AesKeyring / RsaKeyring / V1 formats).

Usage: PYTHONDONTWRITEBYTECODE=1 python generate_raw.py OUTDIR
"""

import base64
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as apad, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

outdir = sys.argv[1]
b64 = lambda b: base64.b64encode(b).decode()
plaintext = b"id,name\n" + b"".join(f"{i},raw_{i}\n".encode() for i in range(300))
wrap_key = bytes(range(32))  # the test's AES master key
rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_pem = rsa_key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
oaep = apad.OAEP(mgf=apad.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def gcm_content(dk):
    iv = os.urandom(12)
    return iv, AESGCM(dk).encrypt(iv, plaintext, None)


def kc_content(dk):
    mid = os.urandom(28)
    hk = lambda info, n: HKDF(hashes.SHA512(), n, mid, info).derive(dk)
    commit, key = hk(b"\x00\x73COMMITKEY", 28), hk(b"\x00\x73DERIVEKEY", 32)
    return mid, commit, AESGCM(key).encrypt(b"\x01" * 12, plaintext, b"\x00\x73")


def save(name, meta, body, dk, **extra):
    doc = {"name": name, "client": "hand-built with cryptography (see generate_raw.py)",
           "metadata": meta, "content_length": len(body), "ciphertext_b64": b64(body),
           "plaintext_b64": b64(plaintext), "data_key_b64": b64(dk), **extra}
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)


# V2, AES/GCM wrapping: EDK = IV(12) || ct || tag(16), AAD = "AES/GCM/NoPadding".
dk = os.urandom(32)
wiv = os.urandom(12)
edk = wiv + AESGCM(wrap_key).encrypt(wiv, dk, b"AES/GCM/NoPadding")
iv, body = gcm_content(dk)
save("v2_aes_gcm_wrap", {"x-amz-key-v2": b64(edk), "x-amz-iv": b64(iv), "x-amz-matdesc": "{}",
     "x-amz-wrap-alg": "AES/GCM", "x-amz-cek-alg": "AES/GCM/NoPadding", "x-amz-tag-len": "128",
     "x-amz-unencrypted-content-length": str(len(plaintext))}, body, dk, wrap_key_b64=b64(wrap_key))

# V3, AES/GCM wrapping ("02"), AAD = "115"; EDK and wrap alg in an instruction file.
dk = os.urandom(32)
wiv = os.urandom(12)
edk = wiv + AESGCM(wrap_key).encrypt(wiv, dk, b"115")
mid, commit, body = kc_content(dk)
save("v3_aes_gcm_wrap_instruction", {"x-amz-c": "115", "x-amz-d": b64(commit), "x-amz-i": b64(mid),
     "x-amz-crypto-instr-file": ""}, body, dk, wrap_key_b64=b64(wrap_key),
     instruction_file=json.dumps({"x-amz-3": b64(edk), "x-amz-w": "02", "x-amz-m": "{}"}))

# V2, RSA-OAEP-SHA1: plaintext = len(1) || data key || cipher name.
dk = os.urandom(32)
edk = rsa_key.public_key().encrypt(bytes([32]) + dk + b"AES/GCM/NoPadding", oaep)
iv, body = gcm_content(dk)
save("v2_rsa_oaep", {"x-amz-key-v2": b64(edk), "x-amz-iv": b64(iv), "x-amz-matdesc": "{\"owner\":\"t\"}",
     "x-amz-wrap-alg": "RSA-OAEP-SHA1", "x-amz-cek-alg": "AES/GCM/NoPadding", "x-amz-tag-len": "128"},
     body, dk, rsa_private_pem=rsa_pem)

# V1 legacy, AES/CBC/PKCS5 content, data key wrapped with AES/ECB/PKCS5 (EDK 48 bytes, no wrap-alg).
dk = os.urandom(32)
enc = Cipher(algorithms.AES(wrap_key), modes.ECB()).encryptor()
p = padding.PKCS7(128).padder()
edk = enc.update(p.update(dk) + p.finalize()) + enc.finalize()
iv = os.urandom(16)
p = padding.PKCS7(128).padder()
enc = Cipher(algorithms.AES(dk), modes.CBC(iv)).encryptor()
body = enc.update(p.update(plaintext) + p.finalize()) + enc.finalize()
save("v1_cbc_aes_legacy", {"x-amz-key": b64(edk), "x-amz-iv": b64(iv), "x-amz-matdesc": "{}",
     "x-amz-unencrypted-content-length": str(len(plaintext))}, body, dk, wrap_key_b64=b64(wrap_key))
