-- Whether the user's address is known to be theirs: set by a verification token, cleared
-- when the address changes.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;

-- Outstanding e-mail tokens (password reset, address verification). A token is never stored:
-- the mail's token is derived from the row's id under a server key, and only its SHA-256
-- hash is kept here to look it up. `email` is the normalized address the mail went to.
-- A row is deleted when its token is used or made void.
CREATE TABLE email_tokens (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('reset', 'verify')),
    token_hash BYTEA NOT NULL UNIQUE,
    email      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);
CREATE INDEX email_tokens_expires_at_idx ON email_tokens (expires_at);

-- Mail waiting to be handed to SMTP, written in the transaction that makes its token and
-- sent after commit. A sender claims a row by setting leased_until; sent_at or failed_at
-- ends it. Ended rows stay a day, for the per-address hourly cap, then are deleted.
-- next_attempt_at and leased_until are wall-clock times of the senders.
CREATE TABLE mail_outbox (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_id        UUID REFERENCES email_tokens (id) ON DELETE SET NULL,
    purpose         TEXT NOT NULL CHECK (purpose IN ('reset', 'verify')),
    recipient       TEXT NOT NULL,
    email           TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    give_up_at      TIMESTAMPTZ NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    leased_until    TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ,
    failed_at       TIMESTAMPTZ
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX mail_outbox_email_idx ON mail_outbox (email, purpose, created_at);
CREATE INDEX mail_outbox_token_idx ON mail_outbox (token_id);
CREATE INDEX mail_outbox_user_idx ON mail_outbox (user_id);
