//! Served like a real site: the client's files precompressed and kept for good by
//! their hashed names, the page checked again each time with a validator, and on
//! every response the headers that keep other sites from framing or misreading it.

mod common;

use base64::Engine;
use common::{Dial, Server, upgrade};
use reqwest::header::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

const HASH: &str = "T3stH4shOfTheScript_1a";

/// A built site as cargo-leptos leaves it with `hash-files` and `--precompress`:
/// the client's script under its hashed name beside brotli and gzip copies, the hash
/// file, and a file of the site's own (the icon).
struct Site {
    root: tempfile::TempDir,
    script: Vec<u8>,
    script_br: Vec<u8>,
}

impl Site {
    fn build() -> Self {
        let root = tempfile::tempdir().expect("a site directory");
        let pkg = root.path().join("pkg");
        std::fs::create_dir(&pkg).expect("a pkg directory");
        let write = |path: std::path::PathBuf, contents: &[u8]| {
            std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"))
        };
        // A script as compressible as the real one (names and glue, repeated).
        let script: Vec<u8> = (0..2_000)
            .map(|i| {
                format!(
                    "export function handler_{i}(event) {{ return wasm.handle(event, {i}); }}\n"
                )
            })
            .collect::<String>()
            .into_bytes();
        let mut script_br = Vec::new();
        {
            let mut writer = brotli::CompressorWriter::new(&mut script_br, 4096, 11, 22);
            writer
                .write_all(&script)
                .expect("brotli compresses in memory");
        }
        let name = format!("hearth.{HASH}.js");
        write(pkg.join(&name), &script);
        write(pkg.join(format!("{name}.br")), &script_br);
        write(pkg.join(format!("{name}.gz")), b"not used by this test");
        write(
            root.path().join("hash.txt"),
            format!("js: {HASH}\nwasm: W4sm\ncss: Cs5\n").as_bytes(),
        );
        write(root.path().join("favicon.svg"), b"<svg></svg>");
        Self {
            root,
            script,
            script_br,
        }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    async fn serve(&self, extra: &[(&str, &str)]) -> Server {
        let root = self.path().display().to_string();
        let hashes = self.path().join("hash.txt").display().to_string();
        let mut env = vec![
            ("LEPTOS_SITE_ROOT", root.as_str()),
            ("HEARTH_ASSET_HASHES", hashes.as_str()),
        ];
        env.extend_from_slice(extra);
        Server::start_with(&env).await
    }
}

async fn get(server: &Server, path: &str, headers: &[(&'static str, &str)]) -> reqwest::Response {
    let mut request = server.http().get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the server answers")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|v| v.to_str().expect("a readable header"))
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// What every response carries, whatever it is.
fn assert_hardened(headers: &HeaderMap) {
    assert_eq!(header(headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(headers, "referrer-policy"), "same-origin");
    assert_eq!(header(headers, "x-frame-options"), "DENY");
    assert!(
        header(headers, "content-security-policy").ends_with("frame-ancestors 'none'"),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_hashed_file_is_sent_precompressed_and_kept_for_good() {
    let site = Site::build();
    let server = site.serve(&[]).await;
    let path = format!("/pkg/hearth.{HASH}.js");

    let compressed = get(&server, &path, &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(compressed.status(), 200);
    let headers = compressed.headers().clone();
    assert_eq!(header(&headers, "content-encoding"), "br");
    assert_eq!(
        header(&headers, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    // A shared cache keeps one copy per encoding, not the brotli one for everyone.
    assert_eq!(header(&headers, "vary"), "accept-encoding");
    assert_hardened(&headers);
    assert_eq!(
        header(&headers, "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );
    let body = compressed.bytes().await.unwrap();
    // The copy made at build time, not one made for this request.
    assert_eq!(body.as_ref(), site.script_br.as_slice());
    assert!(
        body.len() * 3 < site.script.len(),
        "{} bytes of brotli for {} raw",
        body.len(),
        site.script.len()
    );

    // A client that cannot decompress gets the file as it is.
    let plain = get(&server, &path, &[]).await;
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(header(plain.headers(), "vary"), "accept-encoding");
    assert_eq!(
        plain.bytes().await.unwrap().as_ref(),
        site.script.as_slice()
    );

    // A file of the site that may change is checked again each time.
    let icon = get(&server, "/favicon.svg", &[]).await;
    assert_eq!(icon.status(), 200);
    assert_eq!(header(icon.headers(), "cache-control"), "no-cache");
    assert!(icon.headers().contains_key("last-modified"));
    assert_hardened(icon.headers());
}

#[tokio::test]
async fn the_page_names_the_hashed_files_allows_only_its_own_scripts_and_revalidates() {
    let site = Site::build();
    let server = site.serve(&[]).await;
    let page = get(&server, "/", &[]).await;
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_hardened(&headers);
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    let tag = header(&headers, "etag").to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("/pkg/hearth.{HASH}.js")), "{html}");
    assert!(html.contains("/pkg/hearth.Cs5.css"), "{html}");

    // The policy allows exactly the page's inline scripts, by their hashes.
    let policy = header(&headers, "content-security-policy");
    let inline: Vec<&str> = html
        .split("<script")
        .skip(1)
        .filter_map(|rest| {
            let (attributes, after) = rest.split_once('>')?;
            (!attributes.contains("src=")).then(|| after.split("</script>").next().unwrap_or(""))
        })
        .collect();
    assert!(!inline.is_empty(), "hydration needs an inline script");
    for script in inline {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script));
        assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");
    }
    for directive in [
        "default-src 'self'",
        "'wasm-unsafe-eval'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            policy.contains(directive),
            "{directive} missing from {policy}"
        );
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");

    // Coming back costs a 304 and no body; the policy still allows the kept page.
    let again = get(&server, "/", &[("if-none-match", &tag)]).await;
    assert_eq!(again.status(), 304);
    assert_eq!(header(again.headers(), "content-security-policy"), policy);
    assert!(again.bytes().await.unwrap().is_empty());

    // Pages are compressed as they are sent.
    let compressed = get(&server, "/", &[("accept-encoding", "br")]).await;
    assert_eq!(header(compressed.headers(), "content-encoding"), "br");
}

#[tokio::test]
async fn server_functions_and_the_socket_carry_the_same_protections() {
    let server = Server::start().await;
    let answer = server
        .http()
        .post(server.url("/api/claim_name"))
        .form(&[("name", "Ada"), ("token", "a-token-of-adas-own-0123")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_hardened(answer.headers());
    assert_eq!(header(answer.headers(), "cache-control"), "no-store");
    assert_eq!(
        header(answer.headers(), "content-security-policy"),
        "default-src 'none'; frame-ancestors 'none'"
    );

    let (client, response) = upgrade(&server, &Dial::default())
        .await
        .expect("the socket opens");
    let headers: HeaderMap = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            )
        })
        .collect();
    assert_hardened(&headers);
    assert!(headers.get("content-encoding").is_none());
    client.close().await;

    // A refusal by the gate (a host this server does not answer for) too.
    let refused = get(&server, "/", &[("host", "rebound.example")]).await;
    assert_eq!(refused.status(), 421);
    assert_hardened(refused.headers());
}

#[tokio::test]
async fn operators_name_who_may_frame_it_and_https_sites_ask_for_https_only() {
    let server = Server::start_with(&[
        ("HEARTH_PUBLIC_URL", "https://chat.example.org"),
        (
            "HEARTH_FRAME_ANCESTORS",
            "https://intranet.example.org, https://wiki.example.org",
        ),
    ])
    .await;
    let page = get(&server, "/", &[("host", "chat.example.org")]).await;
    assert_eq!(page.status(), 200);
    let headers = page.headers();
    assert!(
        header(headers, "content-security-policy")
            .ends_with("frame-ancestors https://intranet.example.org https://wiki.example.org"),
        "{headers:?}"
    );
    assert!(headers.get("x-frame-options").is_none());
    assert_eq!(
        header(headers, "strict-transport-security"),
        "max-age=31536000"
    );

    // Without https, no promise of it.
    let plain = Server::start().await;
    let page = get(&plain, "/", &[]).await;
    assert!(page.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn the_service_worker_keeps_this_builds_files_and_is_itself_always_checked() {
    let site = Site::build();
    let server = site.serve(&[]).await;
    let worker = get(&server, "/sw.js", &[]).await;
    assert_eq!(worker.status(), 200);
    let headers = worker.headers().clone();
    assert!(header(&headers, "content-type").starts_with("text/javascript"));
    // A stale worker would keep serving an old build.
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert_eq!(
        header(&headers, "content-security-policy"),
        "default-src 'none'; connect-src 'self'"
    );
    let source = worker.text().await.unwrap();
    assert!(
        source.contains(&format!("\"/pkg/hearth.{HASH}.js\"")),
        "{source}"
    );
    assert!(source.contains("\"/pkg/hearth.Cs5.css\""), "{source}");

    for (path, size) in [
        ("/icons/icon-192.png", 192u32),
        ("/icons/icon-512.png", 512),
    ] {
        let icon = get(&server, path, &[]).await;
        assert_eq!(header(icon.headers(), "content-type"), "image/png");
        let png = icon.bytes().await.unwrap();
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), size);
    }
}
