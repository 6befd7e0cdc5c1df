//! `--tls.cert` and `--tls.key`: the PEM files of the HTTPS listener.
//!
//! tiny_http panics on some key files it cannot use (no key block, bad base64), and the
//! release build aborts on a panic, so the files are checked here first and every problem
//! is reported as a message that names the file.

use std::path::Path;

use tiny_http::SslConfig;

use crate::auth::base64;

/// The blocks of a PEM text: (label, DER bytes), or a description of the first bad one.
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let Some((begun, data)) = current.take() else {
                return Err(format!("line {}: END {label} without BEGIN", i + 1));
            };
            if begun != label {
                return Err(format!(
                    "line {}: BEGIN {begun} ended by END {label}",
                    i + 1
                ));
            }
            let der = base64::decode(&data).ok_or_else(|| {
                format!("the {label} block ending on line {} is not base64", i + 1)
            })?;
            blocks.push((label.to_string(), der));
        } else if let Some((_, data)) = current.as_mut() {
            data.push_str(line);
        }
    }
    if let Some((label, _)) = current {
        return Err(format!("the {label} block has no END line"));
    }
    Ok(blocks)
}

fn read(path: &Path, flag: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {flag} file {}: {e}", path.display()))
}

/// Reads and checks both files.
pub fn load(cert: &Path, key: &Path) -> Result<SslConfig, String> {
    let cert_text = read(cert, "--tls.cert")?;
    let bad_cert = |why: String| format!("--tls.cert file {}: {why}", cert.display());
    let blocks = pem_blocks(&cert_text).map_err(bad_cert)?;
    if !blocks.iter().any(|(label, _)| label == "CERTIFICATE") {
        return Err(bad_cert(
            "no \"BEGIN CERTIFICATE\" block: expected a PEM certificate chain".into(),
        ));
    }
    let key_text = read(key, "--tls.key")?;
    let bad_key = |why: String| format!("--tls.key file {}: {why}", key.display());
    let blocks = pem_blocks(&key_text).map_err(bad_key)?;
    let labels: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    if !labels
        .iter()
        .any(|l| *l == "PRIVATE KEY" || *l == "RSA PRIVATE KEY")
    {
        let why = if labels.contains(&"EC PRIVATE KEY") {
            "an \"EC PRIVATE KEY\" (SEC1) is not supported: convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8`".to_string()
        } else if labels.contains(&"ENCRYPTED PRIVATE KEY") {
            "the key is encrypted: decrypt it with `openssl pkcs8 -in KEY -out KEY.plain`"
                .to_string()
        } else {
            "no \"BEGIN PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\" block".to_string()
        };
        return Err(bad_key(why));
    }
    Ok(SslConfig {
        certificate: cert_text.into_bytes(),
        private_key: key_text.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nZm9v\nYmFy\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_blocks(text).unwrap(),
            vec![("CERTIFICATE".to_string(), b"foobar".to_vec())]
        );
        assert!(pem_blocks("-----BEGIN X-----\nZm9v\n")
            .unwrap_err()
            .contains("no END"));
        assert!(pem_blocks("-----BEGIN X-----\n!!\n-----END X-----\n")
            .unwrap_err()
            .contains("not base64"));
        assert!(pem_blocks("-----BEGIN X-----\n-----END Y-----\n")
            .unwrap_err()
            .contains("ended by"));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("pushprox-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(
            &key,
            "-----BEGIN EC PRIVATE KEY-----\nZm9v\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = load(&cert, &key).unwrap_err();
        assert!(
            err.contains("key.pem") && err.contains("EC PRIVATE KEY"),
            "{err}"
        );
        let err = load(&dir.join("missing.pem"), &key).unwrap_err();
        assert!(
            err.contains("--tls.cert") && err.contains("missing.pem"),
            "{err}"
        );
        std::fs::write(&cert, "hello").unwrap();
        let err = load(&cert, &key).unwrap_err();
        assert!(
            err.contains("cert.pem") && err.contains("BEGIN CERTIFICATE"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
