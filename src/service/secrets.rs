//! The signing keys, server secrets and TOTP secrets in the database, sealed under the master key when
//! there is one (`AUTHD_MASTER_KEY`, see [`crate::auth::sealing`]).
//!
//! At start, [`Vault::open`] first checks that every stored secret opens (or is in clear and
//! can be sealed), and only then seals those in clear: a wrong key stops authd before
//! anything is written, and never leads to new keys being generated over the stored ones.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    auth::sealing::MasterKey,
    domain::{totp_row, StoredSecret, StoredSigningKey, StoredTotp},
    repo::{Repo, Resealed},
};

/// Why the stored secrets cannot be used. Each `Display` is one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("AUTHD_MASTER_KEY does not open the secrets stored in the database (another key sealed them); nothing was changed")]
    WrongKey,
    #[error("the secrets stored in the database are sealed, but AUTHD_MASTER_KEY is not set")]
    MissingKey,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Reads and writes stored secrets through the master key.
#[derive(Clone, Debug)]
pub struct Vault {
    repo: Repo,
    master: Option<MasterKey>,
}

impl Vault {
    /// Checks the stored secrets against `master`, then seals those stored in clear.
    pub async fn open(repo: Repo, master: Option<MasterKey>) -> Result<Self, VaultError> {
        let vault = Self { repo, master };
        match &vault.master {
            None => {
                if vault.any_sealed().await? {
                    return Err(VaultError::MissingKey);
                }
                tracing::warn!(
                    "AUTHD_MASTER_KEY is not set: signing keys, server secrets and TOTP secrets are stored in the database in clear"
                );
            }
            Some(master) => {
                let sealed_now = vault.reseal(master, true).await?;
                if sealed_now > 0 {
                    tracing::info!(
                        secrets = sealed_now,
                        "stored secrets sealed under AUTHD_MASTER_KEY"
                    );
                }
            }
        }
        Ok(vault)
    }

    /// The vault of `master` without checking or changing anything (`authd keys rekey`,
    /// whose [`Vault::rekey`] opens every row before it writes).
    pub fn unchecked(repo: Repo, master: Option<MasterKey>) -> Self {
        Self { repo, master }
    }

    async fn any_sealed(&self) -> anyhow::Result<bool> {
        let keys = self.repo.signing_keys().await?;
        let secrets = self.repo.server_secrets().await?;
        let factors = self.repo.totp_factors().await?;
        Ok(keys.iter().any(|k| k.sealed)
            || secrets.iter().any(|s| s.sealed)
            || factors.iter().any(|f| f.sealed))
    }

    /// Opens every stored secret (those in clear as they are, the others with the current
    /// key) and writes it back sealed under `new`, all in one transaction; with
    /// `only_clear`, only the rows stored in clear. Every row is opened before anything is
    /// written. Returns how many rows changed.
    async fn reseal(&self, new: &MasterKey, only_clear: bool) -> Result<usize, VaultError> {
        let keys = self
            .repo
            .signing_keys()
            .await
            .map_err(anyhow::Error::from)?;
        let secrets = self
            .repo
            .server_secrets()
            .await
            .map_err(anyhow::Error::from)?;
        let factors = self
            .repo
            .totp_factors()
            .await
            .map_err(anyhow::Error::from)?;
        let mut updates = Vec::new();
        for key in &keys {
            let clear = self.open_value(&key.row(), &key.private_key, key.sealed)?;
            if !(only_clear && key.sealed) {
                updates.push(Resealed::SigningKey {
                    kid: &key.kid,
                    was: &key.private_key,
                    private_key: new.seal(&key.row(), &clear),
                    sealed: true,
                });
            }
        }
        for secret in &secrets {
            let clear = self.open_value(&secret.row(), &secret.secret, secret.sealed)?;
            if !(only_clear && secret.sealed) {
                updates.push(Resealed::ServerSecret {
                    name: &secret.name,
                    was: &secret.secret,
                    secret: new.seal(&secret.row(), &clear),
                    sealed: true,
                });
            }
        }
        for factor in &factors {
            let clear = self.open_value(&factor.row(), &factor.secret, factor.sealed)?;
            if !(only_clear && factor.sealed) {
                updates.push(Resealed::TotpSecret {
                    user_id: factor.user_id,
                    was: &factor.secret,
                    secret: new.seal(&factor.row(), &clear),
                    sealed: true,
                });
            }
        }
        if !updates.is_empty() {
            self.repo
                .reseal(&updates)
                .await
                .map_err(anyhow::Error::from)?;
        }
        Ok(updates.len())
    }

    /// Moves every stored secret to the master key `new` (`authd keys rekey`); returns how
    /// many rows were sealed again.
    pub async fn rekey(&self, new: &MasterKey) -> Result<usize, VaultError> {
        self.reseal(new, false).await
    }

    /// A TOTP secret as stored, opened.
    pub fn open_totp(&self, factor: &StoredTotp) -> Result<Vec<u8>, VaultError> {
        self.open_value(&factor.row(), &factor.secret, factor.sealed)
    }

    /// A TOTP secret of `user_id` as it is to be stored, and whether that is sealed.
    pub fn seal_totp(&self, user_id: Uuid, clear: Vec<u8>) -> (Vec<u8>, bool) {
        self.seal_value(&totp_row(user_id), clear)
    }

    fn open_value(&self, row: &str, value: &[u8], sealed: bool) -> Result<Vec<u8>, VaultError> {
        if !sealed {
            return Ok(value.to_vec());
        }
        let master = self.master.as_ref().ok_or(VaultError::MissingKey)?;
        master.open(row, value).map_err(|_| VaultError::WrongKey)
    }

    fn seal_value(&self, row: &str, clear: Vec<u8>) -> (Vec<u8>, bool) {
        match &self.master {
            Some(master) => (master.seal(row, &clear), true),
            None => (clear, false),
        }
    }

    /// The signing keys, private keys opened; `candidate` is stored (sealed) first when no
    /// key is active.
    pub async fn signing_keys_or_insert(
        &self,
        mut candidate: StoredSigningKey,
    ) -> Result<Vec<StoredSigningKey>, VaultError> {
        let (private_key, sealed) = self.seal_value(&candidate.row(), candidate.private_key);
        candidate.private_key = private_key;
        candidate.sealed = sealed;
        let stored = self
            .repo
            .signing_keys_or_insert(&candidate)
            .await
            .map_err(anyhow::Error::from)?;
        self.opened(stored)
    }

    /// Every stored signing key, private keys opened.
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, VaultError> {
        let stored = self
            .repo
            .signing_keys()
            .await
            .map_err(anyhow::Error::from)?;
        self.opened(stored)
    }

    fn opened(&self, stored: Vec<StoredSigningKey>) -> Result<Vec<StoredSigningKey>, VaultError> {
        stored
            .into_iter()
            .map(|mut key| {
                key.private_key = self.open_value(&key.row(), &key.private_key, key.sealed)?;
                key.sealed = false;
                Ok(key)
            })
            .collect()
    }

    /// Makes `new` (a key in clear) the active signing key, sealed, and retires the current
    /// one (`authd keys rotate`).
    pub async fn rotate_signing_key(
        &self,
        mut new: StoredSigningKey,
        now: DateTime<Utc>,
    ) -> Result<(), VaultError> {
        (new.private_key, new.sealed) = self.seal_value(&new.row(), new.private_key);
        self.repo
            .rotate_signing_key(&new, now)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(())
    }

    /// The server secret `name`, opened; `candidate` is stored (sealed) first if there is none.
    pub async fn server_secret(
        &self,
        name: &str,
        candidate: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, VaultError> {
        let mut secret = StoredSecret {
            name: name.to_owned(),
            secret: Vec::new(),
            sealed: false,
        };
        (secret.secret, secret.sealed) = self.seal_value(&secret.row(), candidate);
        let stored = self
            .repo
            .server_secret(&secret, now)
            .await
            .map_err(anyhow::Error::from)?;
        self.open_value(&stored.row(), &stored.secret, stored.sealed)
    }
}
