//! Certificate helpers: extracting the public key from an X.509 certificate, making a
//! self-signed certificate and a client-assertion JWT (for tests of certificate authentication).

use crate::util;
use rsa::pkcs8::EncodePublicKey;
use rsa::RsaPrivateKey;

/// Reads one DER TLV at `pos`: (tag, start of content, content length).
fn tlv(buf: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *buf.get(pos)?;
    let l0 = *buf.get(pos + 1)? as usize;
    if l0 < 0x80 {
        return Some((tag, pos + 2, l0));
    }
    let n = l0 & 0x7f;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *buf.get(pos + 2 + i)? as usize;
    }
    let start = pos + 2 + n;
    (start + len <= buf.len()).then_some((tag, start, len))
}

/// The DER `SubjectPublicKeyInfo` inside an X.509 certificate.
pub fn spki_of_certificate(cert: &[u8]) -> Option<Vec<u8>> {
    let (t, c, _) = tlv(cert, 0)?; // Certificate
    if t != 0x30 {
        return None;
    }
    let (t, mut p, _) = tlv(cert, c)?; // tbsCertificate
    if t != 0x30 {
        return None;
    }
    // [0] version (optional), serial, signature, issuer, validity, subject, spki
    let (t0, s0, l0) = tlv(cert, p)?;
    if t0 == 0xA0 {
        p = s0 + l0;
    }
    for _ in 0..5 {
        let (_, s, l) = tlv(cert, p)?;
        p = s + l;
    }
    let (t, s, l) = tlv(cert, p)?;
    (t == 0x30).then(|| cert[p..s + l].to_vec())
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A self-signed X.509 v3 certificate (DER) for `key`, signed with SHA-256/RSA.
pub fn self_signed_certificate(key: &RsaPrivateKey, common_name: &str) -> Vec<u8> {
    use rsa::signature::{SignatureEncoding, Signer};
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];
    let cn = der(0x0c, common_name.as_bytes());
    let atv = der(0x30, &[vec![0x06, 0x03, 0x55, 0x04, 0x03], cn].concat());
    let name = der(0x30, &der(0x31, &atv));
    let validity = der(
        0x30,
        &[der(0x17, b"250101000000Z"), der(0x17, b"491231235959Z")].concat(),
    );
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    let serial = der(0x02, &[0x01, 0x23, 0x45, 0x67]);
    let version = der(0xA0, &der(0x02, &[0x02]));
    let tbs = der(
        0x30,
        &[
            version,
            serial,
            alg.to_vec(),
            name.clone(),
            validity,
            name,
            spki,
        ]
        .concat(),
    );
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let sig = signer.sign(&tbs).to_vec();
    let mut bits = vec![0u8];
    bits.extend(sig);
    der(0x30, &[tbs, alg.to_vec(), der(0x03, &bits)].concat())
}

/// Signature algorithm of a client assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssertionAlg {
    /// RS256 with an `x5t` (SHA-1) thumbprint header — older docs, many clients.
    Rs256,
    /// PS256 with an `x5t#S256` thumbprint header — current docs.
    Ps256,
}

/// Builds a client-assertion JWT as the Microsoft identity platform expects it.
pub fn client_assertion(
    key: &RsaPrivateKey,
    cert_der: &[u8],
    client_id: &str,
    audience: &str,
    alg: AssertionAlg,
) -> String {
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
    let header = match alg {
        AssertionAlg::Rs256 => {
            serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": util::b64url(&util::sha1(cert_der))})
        }
        AssertionAlg::Ps256 => {
            serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": util::b64url(&util::sha256(cert_der))})
        }
    };
    let now = util::unix_now().as_secs() as i64;
    let mut rng = util::Rng::new(now as u64);
    let claims = serde_json::json!({
        "aud": audience, "iss": client_id, "sub": client_id, "jti": rng.guid(),
        "nbf": now, "iat": now, "exp": now + 600
    });
    let input = format!(
        "{}.{}",
        util::b64url(header.to_string().as_bytes()),
        util::b64url(claims.to_string().as_bytes())
    );
    let sig = match alg {
        AssertionAlg::Rs256 => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone())
            .sign(input.as_bytes())
            .to_vec(),
        AssertionAlg::Ps256 => rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(key.clone())
            .sign_with_rng(&mut rsa::rand_core::OsRng, input.as_bytes())
            .to_vec(),
    };
    format!("{input}.{}", util::b64url(&sig))
}
