//! HTTPS on the daemon's listener end to end: a self-signed certificate made here (rcgen),
//! webhooks and the API over TLS from a client that trusts only it, the CLI's commands
//! through the same listener (pinned to the published certificate), plain HTTP refused, bad
//! certificate files named, and the warning for a non-loopback listener without TLS.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Daemon, Project};
use serde_json::Value;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn self_signed() -> Certificate {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    Certificate {
        cert,
        key,
        der: made.cert.der().to_vec(),
        _dir: dir,
    }
}

/// One HTTPS request from a client that trusts only `cert_der`; the status and body.
fn https(
    addr: SocketAddr,
    cert_der: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (status, _, body) = https_answer(addr, cert_der, method, path, headers, body);
    (status, body)
}

/// [`https`], with the answer's head (status line and headers) too.
fn https_answer(
    addr: SocketAddr,
    cert_der: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der.to_vec().into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = "localhost".try_into().unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tls.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // The server closes after answering (Connection: close); rustls reports a close without
    // close_notify as an error, after the bytes.
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer over TLS: {answer:?}"));
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or_default();
    (status, head, body)
}

fn tls_daemon(project: &Project, certificate: &Certificate) -> common::Daemon {
    project.daemon(&[
        "--tls-cert",
        certificate.cert.to_str().unwrap(),
        "--tls-key",
        certificate.key.to_str().unwrap(),
    ])
}

#[test]
fn webhooks_the_api_and_the_cli_work_over_https() {
    let project = Project::new();
    project.tool("echo", r#"cat >/dev/null; printf '{"ok":true}'"#);
    let certificate = self_signed();
    let daemon = tls_daemon(&project, &certificate);
    assert!(
        daemon.stderr().contains("listening on https://"),
        "{}",
        daemon.stderr()
    );
    let info: Value = serde_json::from_slice(
        &std::fs::read(project.root().join(".sdlc/orchestrator.db.daemon.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["tls_sha256"].as_str().unwrap().len(), 64, "{info}");

    // The CLI reaches the daemon through its HTTPS listener (the database is the daemon's
    // alone while it runs, so these succeed only through it).
    project.sdlc_ok(&["orchestrate", "webhook", "add", "deploy", "--tool", "echo"]);
    let id = project.add(&["over-tls", "--tool", "echo", "--at", "now"]);
    common::wait_for_status(&project, &id, "completed", Duration::from_secs(30));

    // A webhook from a client that trusts this certificate.
    let (status, body) = https(
        daemon.addr,
        &certificate.der,
        "POST",
        "/webhooks/deploy",
        &[("Content-Type", "application/json")],
        r#"{"ref":"main"}"#,
    );
    assert_eq!(status, 202, "{body}");
    let delivered: Value = serde_json::from_str(&body).unwrap();
    let action = delivered["id"].as_str().unwrap().to_string();
    common::wait_for_status(&project, &action, "completed", Duration::from_secs(30));

    // The API over TLS, with the token.
    let token = daemon.token(&project);
    let (status, body) = https(
        daemon.addr,
        &certificate.der,
        "GET",
        "/api/orchestrator/status",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    assert_eq!(status, 200, "{body}");

    // The dashboard's login address is an https one; the session it opens is for HTTPS only
    // (a Secure cookie), and every answer tells the browser to keep to HTTPS (HSTS).
    let login = project.sdlc_ok(&["orchestrate", "ui"]);
    assert!(login.starts_with("https://"), "{login}");
    let path = &login.trim()[login.trim().find("/login").unwrap()..];
    let (status, head, _) = https_answer(daemon.addr, &certificate.der, "GET", path, &[], "");
    assert_eq!(status, 303, "{head}");
    let head = head.to_ascii_lowercase();
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{head}"));
    assert!(
        cookie.contains("; secure") && cookie.contains("httponly"),
        "{cookie}"
    );
    assert!(
        head.contains("strict-transport-security: max-age="),
        "{head}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(daemon.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(b"GET /api/orchestrator/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(daemon.stop().success());
}

fn refused_start(project: &Project, cert: &Path, key: &Path) -> String {
    let out = project.sdlc(&[
        "orchestrate",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("listening on"), "{stderr}");
    stderr
}

#[test]
fn unusable_certificate_files_are_refused_naming_the_file() {
    let project = Project::new();
    let certificate = self_signed();
    let other = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();

    let stderr = refused_start(&project, &missing, &certificate.key);
    assert!(
        stderr.contains("missing.pem") && stderr.contains("--tls-cert"),
        "{stderr}"
    );
    let stderr = refused_start(&project, &not_pem, &certificate.key);
    assert!(
        stderr.contains("not.pem") && stderr.contains("holds no certificate"),
        "{stderr}"
    );
    let stderr = refused_start(&project, &certificate.cert, &not_pem);
    assert!(
        stderr.contains("not.pem") && stderr.contains("--tls-key"),
        "{stderr}"
    );
    // A key that belongs to another certificate.
    let stderr = refused_start(&project, &certificate.cert, &other.key);
    assert!(stderr.contains("cannot be used together"), "{stderr}");

    // One without the other is a usage error.
    let out = project.sdlc(&[
        "orchestrate",
        "--tls-cert",
        certificate.cert.to_str().unwrap(),
        "status",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

#[test]
fn a_listener_beyond_loopback_without_tls_is_warned_about() {
    let project = Project::new();
    let daemon = Daemon::start_command(project.command(&["orchestrate", "--listen", "0.0.0.0:0"]));
    common::wait_for("the warning", Duration::from_secs(30), || {
        daemon.stderr().contains("without TLS").then_some(())
    });
    assert!(
        daemon.stderr().contains("--tls-cert"),
        "{}",
        daemon.stderr()
    );
    assert!(daemon.stop().success());

    // On loopback, no warning.
    let daemon = project.daemon(&[]);
    let status = project.sdlc_ok(&["orchestrate", "status"]);
    assert!(status.contains("running"), "{status}");
    assert!(
        !daemon.stderr().contains("without TLS"),
        "{}",
        daemon.stderr()
    );
    assert!(daemon.stop().success());
}
