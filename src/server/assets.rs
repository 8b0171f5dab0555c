//! The client's files as the server knows them: which carry their content's hash
//! in their names (cargo-leptos's `hash-files`), so that they never change and may
//! be cached for good; where the stylesheet is; and the files the service worker
//! keeps so the page opens without a network.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The name cargo-leptos gives the client's files (`output-name`).
pub const OUTPUT_NAME: &str = "hearth";
/// Where under the site root the client's files are (`site-pkg-dir`).
pub const PKG_DIR: &str = "pkg";

/// The hash file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the client's file hashes from {path}: {source}")]
pub struct AssetsError {
    path: PathBuf,
    source: std::io::Error,
}

/// The client's files, as named by the build.
#[derive(Clone, Debug, Default)]
pub struct Assets {
    /// The hash file, when the build named the files by their hashes.
    hash_file: Option<PathBuf>,
    /// The script, the WASM and the stylesheet, as requested (`/pkg/hearth.….js`).
    script: String,
    wasm: String,
    stylesheet: String,
    /// Of those, the ones whose names carry their hash.
    hashed: HashSet<String>,
}

impl Assets {
    /// Reads the hash file `configured`, or else the one cargo-leptos writes beside
    /// the binary, if there is one; without one the files keep their plain names
    /// (a development build).
    pub fn load(configured: Option<&Path>) -> Result<Self, AssetsError> {
        let path = match configured {
            Some(path) => Some(path.to_owned()),
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.join("hash.txt")))
                .filter(|path| path.is_file()),
        };
        let Some(path) = path else {
            return Ok(Self::plain());
        };
        let hashes = std::fs::read_to_string(&path).map_err(|source| AssetsError {
            path: path.clone(),
            source,
        })?;
        // Leptos reads the file again, relative to the binary's directory; an
        // absolute path is taken as it is.
        let path = std::path::absolute(&path).unwrap_or(path);
        Ok(Self::from_hashes(&hashes, Some(path)))
    }

    /// Files named `hearth.js`, `hearth.wasm`, `hearth.css`.
    fn plain() -> Self {
        Self::from_hashes("", None)
    }

    /// From the hash file's lines (`js: <hash>`, `wasm: <hash>`, `css: <hash>`).
    fn from_hashes(hashes: &str, hash_file: Option<PathBuf>) -> Self {
        let hash_of = |kind: &str| {
            hashes.lines().find_map(|line| {
                let (file, hash) = line.split_once(':')?;
                (file.trim() == kind && !hash.trim().is_empty()).then(|| hash.trim().to_owned())
            })
        };
        let mut hashed = HashSet::new();
        let mut name = |kind: &str, extension: &str| match hash_of(kind) {
            Some(hash) => {
                let path = format!("/{PKG_DIR}/{OUTPUT_NAME}.{hash}.{extension}");
                hashed.insert(path.clone());
                path
            }
            None => format!("/{PKG_DIR}/{OUTPUT_NAME}.{extension}"),
        };
        let script = name("js", "js");
        let wasm = name("wasm", "wasm");
        let stylesheet = name("css", "css");
        Self {
            hash_file: hash_file.filter(|_| !hashed.is_empty()),
            script,
            wasm,
            stylesheet,
            hashed,
        }
    }

    /// The hash file, for Leptos to name the script and the WASM it loads.
    pub fn hash_file(&self) -> Option<&Path> {
        self.hash_file.as_deref()
    }

    pub fn stylesheet(&self) -> &str {
        &self.stylesheet
    }

    /// Whether the file at `path` is named by its content, so never changes.
    pub fn is_hashed(&self, path: &str) -> bool {
        self.hashed.contains(path)
    }

    /// What a visitor needs to open the page without a network: the page, the
    /// client's files and the tab's icon (not the app icons, which only an
    /// installation needs: a first visit does not download them).
    pub fn shell(&self) -> Vec<&str> {
        vec![
            "/",
            &self.script,
            &self.wasm,
            &self.stylesheet,
            "/favicon.svg",
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_come_from_the_hash_file_and_only_those_are_for_good() {
        let assets = Assets::from_hashes(
            "js: AbC_12\nwasm: ZzZ-9\ncss: Qq\n",
            Some("/srv/hash.txt".into()),
        );
        assert_eq!(assets.stylesheet(), "/pkg/hearth.Qq.css");
        assert!(assets.is_hashed("/pkg/hearth.AbC_12.js"));
        assert!(assets.is_hashed("/pkg/hearth.ZzZ-9.wasm"));
        assert!(!assets.is_hashed("/pkg/hearth.js"));
        assert!(!assets.is_hashed("/favicon.svg"));
        assert_eq!(assets.hash_file(), Some(Path::new("/srv/hash.txt")));
        assert!(assets.shell().contains(&"/pkg/hearth.ZzZ-9.wasm"));
    }

    #[test]
    fn without_hashes_the_plain_names_are_never_kept_for_good() {
        let assets = Assets::plain();
        assert_eq!(assets.stylesheet(), "/pkg/hearth.css");
        assert!(!assets.is_hashed("/pkg/hearth.css"));
        assert_eq!(assets.hash_file(), None);
        let empty = Assets::from_hashes("\n", Some("/srv/hash.txt".into()));
        assert_eq!(empty.hash_file(), None);
    }

    #[test]
    fn a_configured_hash_file_that_is_missing_is_an_error() {
        let err = Assets::load(Some(Path::new("/nonexistent/hash.txt"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/hash.txt"), "{err}");
    }
}
