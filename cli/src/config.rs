//! Where the URL and the credentials come from: flags over the environment (`KEYWARD_URL`,
//! `KEYWARD_TOKEN`, `KEYWARD_ADMIN_TOKEN`) over a named profile of the config file, which
//! `keyward login` writes with owner-only permissions.

use crate::client::{Failure, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The config file's name in the user's config directory (`$XDG_CONFIG_HOME/keyward/` on Linux).
const FILE: &str = "config.json";
/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// One deployment and the credentials kept for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A user key (`kwa_...:kws_...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The deployment's admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
}

/// The whole file: named profiles and which is used by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// The config file's path: `KEYWARD_CONFIG` if set, else `<config dir>/keyward/config.json`.
pub fn path(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(p) = env("KEYWARD_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir()
        .map(|d| d.join("keyward").join(FILE))
        .ok_or_else(|| {
            Failure::Local("no config directory is known for this user (set KEYWARD_CONFIG)".into())
        })
}

impl ConfigFile {
    /// The file at `path`; an absent file is an empty config.
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
            Err(e) => {
                return Err(Failure::Local(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        warn_if_readable_by_others(path);
        serde_json::from_str(&text).map_err(|e| {
            Failure::Local(format!(
                "{} is not a keyward config file: {e}",
                path.display()
            ))
        })
    }

    /// Write the file with mode 0600 (its directory 0700), replacing it whole: written to a
    /// temporary file beside it first, so a failure never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let local =
            |e: std::io::Error| Failure::Local(format!("cannot write {}: {e}", path.display()));
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(local)?;
        let tmp = dir.join(format!(".{FILE}.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self).expect("a config serialises") + "\n";
        let written = (|| {
            let mut f = private_file(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(local)
    }

    /// The profile to use: the one named (which must exist), else the file's default, else
    /// `default` (which may be absent: the environment may say everything).
    pub fn profile(&self, named: Option<&str>) -> Result<(String, Profile)> {
        match named {
            Some(n) => self
                .profiles
                .get(n)
                .map(|p| (n.to_owned(), p.clone()))
                .ok_or_else(|| {
                    Failure::BadInput(format!(
                        "no profile named {n} in the config file (keyward login --profile {n} makes one)"
                    ))
                }),
            None => {
                let n = self.default_profile.as_deref().unwrap_or(DEFAULT_PROFILE);
                Ok((n.to_owned(), self.profiles.get(n).cloned().unwrap_or_default()))
            }
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(p: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
}

#[cfg(not(unix))]
fn private_file(p: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).open(p)
}

#[cfg(unix)]
fn warn_if_readable_by_others(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::metadata(p) {
        if m.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: {} holds credentials and others may read it; run chmod 600 on it",
                p.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// Where the three settings came from, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub url: Option<String>,
    pub token: Option<String>,
    pub admin_token: Option<String>,
    /// The profile consulted (for messages).
    pub profile: String,
}

/// Flags over the environment over the profile, for each setting on its own. Empty values count
/// as unset.
pub fn resolve(
    flag_url: Option<String>,
    flag_token: Option<String>,
    flag_admin_token: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    profile_name: String,
    profile: Profile,
) -> Resolved {
    let set = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    Resolved {
        url: set(flag_url)
            .or_else(|| set(env("KEYWARD_URL")))
            .or(set(profile.url)),
        token: set(flag_token)
            .or_else(|| set(env("KEYWARD_TOKEN")))
            .or(set(profile.token)),
        admin_token: set(flag_admin_token)
            .or_else(|| set(env("KEYWARD_ADMIN_TOKEN")))
            .or(set(profile.admin_token)),
        profile: profile_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn profile() -> Profile {
        Profile {
            url: Some("https://profile.example".into()),
            token: Some("profile-token".into()),
            admin_token: Some("profile-admin".into()),
        }
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_profile() {
        let env = env_of(&[
            ("KEYWARD_URL", "https://env.example"),
            ("KEYWARD_TOKEN", "env-token"),
        ]);
        let r = resolve(None, None, None, &env, "p".into(), profile());
        assert_eq!(r.url.as_deref(), Some("https://env.example"));
        assert_eq!(r.token.as_deref(), Some("env-token"));
        assert_eq!(r.admin_token.as_deref(), Some("profile-admin"));

        let r = resolve(
            Some("https://flag.example".into()),
            Some("file-token".into()),
            Some("file-admin".into()),
            &env,
            "p".into(),
            profile(),
        );
        assert_eq!(r.url.as_deref(), Some("https://flag.example"));
        assert_eq!(r.token.as_deref(), Some("file-token"));
        assert_eq!(r.admin_token.as_deref(), Some("file-admin"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let env = env_of(&[("KEYWARD_URL", ""), ("KEYWARD_ADMIN_TOKEN", "  ")]);
        let r = resolve(Some(String::new()), None, None, &env, "p".into(), profile());
        assert_eq!(r.url.as_deref(), Some("https://profile.example"));
        assert_eq!(r.admin_token.as_deref(), Some("profile-admin"));
    }

    #[test]
    fn a_named_profile_must_exist_and_the_default_may_be_absent() {
        let mut c = ConfigFile::default();
        assert!(matches!(c.profile(Some("prod")), Err(Failure::BadInput(_))));
        assert_eq!(
            c.profile(None).unwrap(),
            ("default".into(), Profile::default())
        );
        c.profiles.insert("prod".into(), profile());
        c.default_profile = Some("prod".into());
        assert_eq!(c.profile(None).unwrap(), ("prod".into(), profile()));
    }

    #[cfg(unix)]
    #[test]
    fn the_config_file_is_written_owner_only_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("keyward-cli-config-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = dir.join("nested").join("config.json");
        let mut c = ConfigFile::default();
        c.profiles.insert("prod".into(), profile());
        c.save(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(ConfigFile::load(&p).unwrap(), c);
        // Saved again over itself: still 0600, no temporary file left behind.
        c.default_profile = Some("prod".into());
        c.save(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        assert_eq!(ConfigFile::load(&p).unwrap(), c);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_an_empty_config() {
        let p = std::env::temp_dir().join("keyward-cli-no-such-dir-xyz/config.json");
        assert_eq!(ConfigFile::load(&p).unwrap(), ConfigFile::default());
    }
}
