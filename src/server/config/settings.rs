//! The machinery behind Hearth's one list of settings (`config/mod.rs`): from one
//! entry per setting, the command-line flags (each reading its environment
//! variable), the file's keys, the effective value with its default, where each
//! value came from, and the text `--print-config` and `Leptos.toml` show.

use serde::Serialize;

/// Where a setting's value came from, lowest precedence first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(std::path::PathBuf),
    Environment(&'static str),
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Environment(var) => write!(f, "environment {var}"),
            Source::Flag(flag) => write!(f, "flag --{}", flag.replace('_', "-")),
        }
    }
}

/// A value as a line of TOML shows it; `None` for a value TOML cannot hold (an
/// optional setting left unset).
pub fn toml_value(value: &impl Serialize) -> Option<String> {
    toml::Value::try_from(value).ok().map(|v| v.to_string())
}

/// One setting as `--print-config` and `Leptos.toml` show it: its documentation
/// as comments, then `key = value` (commented out when unset), then, when asked,
/// where the value came from.
pub fn render_setting(
    out: &mut String,
    doc: &[&str],
    key: &str,
    value: Option<String>,
    source: Option<&Source>,
) {
    use std::fmt::Write;
    for line in doc {
        let _ = writeln!(out, "#{}", line.trim_end());
    }
    let line = match value {
        Some(value) => format!("{key} = {value}"),
        None => format!("# {key} = (not set)"),
    };
    match source {
        Some(source) => {
            let _ = writeln!(out, "{line}  # {source}");
        }
        None => {
            let _ = writeln!(out, "{line}");
        }
    }
    out.push('\n');
}

/// Defines the settings: for each, its documentation, optional `#[arg(...)]`
/// attributes for the flag, its name (the flag, the file key and the field), its
/// type and default, and its environment variable.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $(#[arg($($arg:tt)*)])?
        $field:ident : $ty:ty = $default:expr, env = $env:literal;
    )*) => {
        /// Command-line flags; each also reads the environment variable named beside it.
        #[derive(Debug, Default, clap::Parser)]
        #[command(name = "hearth", version, about = "Self-hosted real-time group chat")]
        pub struct Flags {
            /// Configuration file. Without this, `Leptos.toml` in the working directory
            /// is read if it exists; a file named here must exist (`/dev/null` for none).
            #[arg(long, env = "HEARTH_CONFIG")]
            pub config: Option<std::path::PathBuf>,
            /// Prints every setting with its value and where the value came from
            /// (default, file, environment or flag), and exits.
            #[arg(long)]
            pub print_config: bool,
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env $(, $($arg)*)?)]
                pub $field: Option<$ty>,
            )*
        }

        /// The file's keys; all optional, none unknown.
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileConfig {
            $( $field: Option<$ty>, )*
        }

        /// The settings Hearth runs with, as given (durations in the units their
        /// names say; see the methods for what is derived from them).
        #[derive(Clone, Debug, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// Where each setting's value came from, in the order of the settings.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct Sources(Vec<(&'static str, settings::Source)>);

        impl Sources {
            pub fn of(&self, key: &str) -> Option<&settings::Source> {
                self.0.iter().find(|(k, _)| *k == key).map(|(_, s)| s)
            }
        }

        impl Config {
            /// Each setting from the flags (or their environment variables, as
            /// `matches` tells), else the file (`file_path`), else its default.
            fn merge(
                flags: Flags,
                matches: Option<&clap::ArgMatches>,
                file: FileConfig,
                file_path: &std::path::Path,
            ) -> (Self, Sources) {
                let defaults = Self::default();
                let mut sources = Vec::new();
                let config = Self { $(
                    $field: {
                        let key = stringify!($field);
                        let (value, source) = match (flags.$field, file.$field) {
                            (Some(value), _) => {
                                let from_env = matches.and_then(|m| m.value_source(key))
                                    == Some(clap::parser::ValueSource::EnvVariable);
                                let source = if from_env {
                                    settings::Source::Environment($env)
                                } else {
                                    settings::Source::Flag(key)
                                };
                                (value, source)
                            }
                            (None, Some(value)) => (value, settings::Source::File(file_path.to_owned())),
                            (None, None) => (defaults.$field, settings::Source::Default),
                        };
                        sources.push((key, source));
                        value
                    },
                )* };
                (config, Sources(sources))
            }

            /// Every setting with its documentation, as TOML; with `sources`, each
            /// line says where its value came from.
            pub fn render(&self, sources: Option<&Sources>) -> String {
                let mut out = String::new();
                $(
                    settings::render_setting(
                        &mut out,
                        &[$($doc),*],
                        stringify!($field),
                        settings::toml_value(&self.$field),
                        sources.and_then(|s| s.of(stringify!($field))),
                    );
                )*
                out
            }
        }
    };
}

pub(crate) use settings;
