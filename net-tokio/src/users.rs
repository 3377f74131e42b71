//! Client users: who may log in with `AUTH`, with what password, and what each may run.
//!
//! A useful subset of Redis ACLs. The `default` user is the one a connection starts as and the
//! one `AUTH password` names; it needs no password unless the configuration's `password` field
//! (plain text, as before users existed) or a `users` entry named `default` gives one. Named
//! users have argon2id password hashes (PHC strings, `ringkv hash-password`) and an access level:
//! read-write runs every command, read-only runs reads and connection commands and gets Redis's
//! `NOPERM` error on anything else.
//!
//! Argon2 is slow on purpose (tens of milliseconds and about 19 MiB per check at the default
//! parameters), so a check runs on tokio's blocking pool, never on a connection's thread, and at
//! most [`PASSWORD_CHECKS_MAX`] run at once: a flood of AUTH attempts from many connections
//! waits for a slot instead of growing threads and memory without bound.

use std::collections::BTreeMap;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

use crate::config::{Access, UserFileConfig};

/// Most argon2 checks running at once in a process.
pub const PASSWORD_CHECKS_MAX: usize = 4;

/// The name of the user every connection starts as.
pub const DEFAULT_USER: &str = "default";

/// Every user a node knows, built from its configuration.
#[derive(Debug)]
pub struct Users {
    default_password: DefaultPassword,
    named: BTreeMap<String, NamedUser>,
    checks: Arc<Semaphore>,
}

/// How the `default` user logs in.
#[derive(Debug)]
enum DefaultPassword {
    /// No password: connections start logged in as `default`.
    None,
    /// The configuration's plain-text `password` field.
    Plain(String),
    /// A `users` entry named `default`; its access is in `Users::named`.
    Hashed,
}

#[derive(Debug)]
struct NamedUser {
    password_hash: String,
    access: Access,
}

/// A user a connection is logged in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// The user's name (`ACL WHOAMI`).
    pub name: String,
    /// What the user may do.
    pub access: Access,
}

impl Users {
    /// The users of a configuration (`password` and `users`, already validated).
    pub fn new(password: Option<String>, users: &[UserFileConfig]) -> Users {
        let named: BTreeMap<String, NamedUser> = users
            .iter()
            .map(|user| {
                let entry =
                    NamedUser { password_hash: user.password_hash.clone(), access: user.access };
                (user.name.clone(), entry)
            })
            .collect();
        let default_password = match password {
            Some(password) => DefaultPassword::Plain(password),
            None if named.contains_key(DEFAULT_USER) => DefaultPassword::Hashed,
            None => DefaultPassword::None,
        };
        Users { default_password, named, checks: Arc::new(Semaphore::new(PASSWORD_CHECKS_MAX)) }
    }

    /// No users and no password: everyone is `default` with every right.
    pub fn open() -> Users {
        Users::new(None, &[])
    }

    /// The user a new connection is logged in as, if any: `default` when it needs no password.
    pub fn initial(&self) -> Option<LoggedIn> {
        match self.default_password {
            DefaultPassword::None => {
                Some(LoggedIn { name: DEFAULT_USER.into(), access: Access::ReadWrite })
            }
            DefaultPassword::Plain(_) | DefaultPassword::Hashed => None,
        }
    }

    /// Whether the `default` user has a password (`AUTH password` is refused otherwise).
    pub fn default_has_password(&self) -> bool {
        !matches!(self.default_password, DefaultPassword::None)
    }

    /// Checks `password` for user `name`; `None` for an unknown user or a wrong password.
    /// An argon2 check runs on the blocking pool (see the module's documentation).
    pub async fn verify(&self, name: &str, password: &[u8]) -> Option<LoggedIn> {
        if name == DEFAULT_USER {
            let default = LoggedIn { name: DEFAULT_USER.into(), access: Access::ReadWrite };
            match &self.default_password {
                DefaultPassword::Plain(expected) => {
                    return constant_time_eq(expected.as_bytes(), password).then_some(default);
                }
                // Redis's `nopass`: any password is accepted.
                DefaultPassword::None => return Some(default),
                DefaultPassword::Hashed => {}
            }
        }
        let user = self.named.get(name)?;
        // The semaphore is never closed, so acquiring fails only if it were; refuse then.
        let _slot = self.checks.acquire().await.ok()?;
        let hash = user.password_hash.clone();
        let password = password.to_vec();
        let matches = tokio::task::spawn_blocking(move || check_password(&hash, &password))
            .await
            .unwrap_or(false);
        matches.then(|| LoggedIn { name: name.to_string(), access: user.access })
    }

    /// `ACL LIST`: one line per user in Redis's rule format, sorted by name. No password hash is
    /// shown: Redis shows an unsalted SHA-256 of each password, which would let anyone who
    /// reads the list try a dictionary against it; a user with a password shows no `nopass`.
    pub fn acl_list(&self) -> Vec<String> {
        let mut lines: Vec<(&str, String)> = self
            .named
            .iter()
            .map(|(name, user)| (name.as_str(), format!("user {name} on {}", rules(user.access))))
            .collect();
        if !self.named.contains_key(DEFAULT_USER) {
            let password = match self.default_password {
                DefaultPassword::None => " nopass",
                DefaultPassword::Plain(_) | DefaultPassword::Hashed => "",
            };
            let line = format!("user {DEFAULT_USER} on{password} {}", rules(Access::ReadWrite));
            lines.push((DEFAULT_USER, line));
        }
        // Redis lists its users sorted by name.
        lines.sort();
        lines.into_iter().map(|(_, line)| line).collect()
    }

    /// `ACL USERS`: every user's name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.named.keys().cloned().collect();
        if !self.named.contains_key(DEFAULT_USER) {
            names.push(DEFAULT_USER.into());
        }
        names.sort();
        names
    }
}

/// The key, channel and command rules of an access level, as Redis writes them.
fn rules(access: Access) -> &'static str {
    match access {
        Access::ReadWrite => "~* &* +@all",
        Access::ReadOnly => "~* &* -@all +@read +@connection",
    }
}

/// Hashes `password` with argon2id at the crate's default parameters and a random salt; the
/// PHC string goes in a user's `password_hash`.
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|error| format!("no randomness: {error}"))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|error| error.to_string())?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| format!("cannot hash: {error}"))?;
    Ok(hash.to_string())
}

/// Parses a PHC string and checks that it is an argon2 hash, for validating a configuration.
pub fn parse_password_hash(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc)
        .map_err(|error| format!("is not a PHC string ({error}); use `ringkv hash-password`"))?;
    let algorithm = hash.algorithm.as_str();
    if !matches!(algorithm, "argon2id" | "argon2i" | "argon2d") {
        return Err(format!("uses `{algorithm}`; ringkv takes argon2 hashes"));
    }
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err("has no salt or no hash".into());
    }
    Ok(())
}

/// Whether `password` matches the PHC string `phc` (blocks for the argon2 computation).
fn check_password(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        // Validated at start; a hash that stopped parsing matches nothing.
        Err(_) => false,
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess of the
/// plain-text default password was right.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str, access: Access) -> UserFileConfig {
        UserFileConfig {
            name: name.into(),
            password_hash: hash_password(password).unwrap(),
            access,
        }
    }

    #[test]
    fn a_hash_is_an_argon2id_phc_string_that_verifies_its_password_only() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        parse_password_hash(&phc).unwrap();
        assert!(check_password(&phc, b"correct horse"));
        assert!(!check_password(&phc, b"correct horsf"));
        assert_ne!(phc, hash_password("correct horse").unwrap(), "salts must differ");
        assert!(hash_password("").is_err());
        assert!(parse_password_hash("plain").unwrap_err().contains("PHC"));
    }

    #[tokio::test]
    async fn users_log_in_with_their_password_and_get_their_access() {
        let users = Users::new(
            Some("secret".into()),
            &[
                user("reader", "r-pass", Access::ReadOnly),
                user("writer", "w-pass", Access::ReadWrite),
            ],
        );
        assert_eq!(users.initial(), None);
        let reader = users.verify("reader", b"r-pass").await.unwrap();
        assert_eq!((reader.name.as_str(), reader.access), ("reader", Access::ReadOnly));
        assert_eq!(users.verify("reader", b"w-pass").await, None);
        assert_eq!(users.verify("nobody", b"r-pass").await, None);
        assert_eq!(users.verify("default", b"secret").await.unwrap().access, Access::ReadWrite);
        assert_eq!(users.verify("default", b"secreT").await, None);
        assert_eq!(
            users.acl_list(),
            vec![
                "user default on ~* &* +@all",
                "user reader on ~* &* -@all +@read +@connection",
                "user writer on ~* &* +@all",
            ]
        );
        assert_eq!(users.names(), vec!["default", "reader", "writer"]);
        let open = Users::open();
        assert_eq!(open.initial().unwrap().name, "default");
        assert!(open.verify("default", b"anything").await.is_some(), "nopass takes any password");
        assert_eq!(open.verify("reader", b"r-pass").await, None);
        assert_eq!(open.acl_list(), vec!["user default on nopass ~* &* +@all"]);
    }
}
