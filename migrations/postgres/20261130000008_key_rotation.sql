-- When a signing key stopped signing (`authd keys rotate`). A retired key still verifies
-- tokens, and stays in the JWK set, for the access-token lifetime after this.
ALTER TABLE signing_keys ADD COLUMN retired_at TIMESTAMPTZ;
