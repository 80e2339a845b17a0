-- One database and one login role per component; CONNECT revoked from PUBLIC, so each role
-- is refused on every database but its own (docs/architecture.md, "Databases and roles").
--
-- One source for both stacks: the postgres image's entrypoint runs it once on an empty data
-- directory (docker-compose.yml, /docker-entrypoint-initdb.d, psql autocommit), and the
-- local stack runs it statement by statement on every `up` (crates/stack/src/postgres.rs),
-- skipping roles and databases that already exist. Keep one statement per `;`, comments on
-- lines of their own. deploy/validate.sh fails when it drifts from crates/stack/src/catalog.rs.
-- No passwords here: a role without one cannot log in over TCP (scram-sha-256). Each role's
-- password is set after this file, from a secret: the local stack generates one per role
-- into .stack/secrets and runs ALTER ROLE; docker-compose runs deploy/postgres/passwords.sh
-- with the passwords from the environment (docs/security.md).

-- Without this, every role could still connect to the `postgres` maintenance database.
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;

CREATE ROLE order_svc LOGIN;
CREATE DATABASE order_db OWNER order_svc;
REVOKE CONNECT ON DATABASE order_db FROM PUBLIC;
GRANT CONNECT ON DATABASE order_db TO order_svc;

CREATE ROLE inventory_svc LOGIN;
CREATE DATABASE inventory_db OWNER inventory_svc;
REVOKE CONNECT ON DATABASE inventory_db FROM PUBLIC;
GRANT CONNECT ON DATABASE inventory_db TO inventory_svc;

CREATE ROLE payment_svc LOGIN;
CREATE DATABASE payment_db OWNER payment_svc;
REVOKE CONNECT ON DATABASE payment_db FROM PUBLIC;
GRANT CONNECT ON DATABASE payment_db TO payment_svc;

CREATE ROLE shipping_svc LOGIN;
CREATE DATABASE shipping_db OWNER shipping_svc;
REVOKE CONNECT ON DATABASE shipping_db FROM PUBLIC;
GRANT CONNECT ON DATABASE shipping_db TO shipping_svc;

CREATE ROLE orchestrator_svc LOGIN;
CREATE DATABASE orchestrator_db OWNER orchestrator_svc;
REVOKE CONNECT ON DATABASE orchestrator_db FROM PUBLIC;
GRANT CONNECT ON DATABASE orchestrator_db TO orchestrator_svc;

CREATE ROLE registry_svc LOGIN;
CREATE DATABASE registry_db OWNER registry_svc;
REVOKE CONNECT ON DATABASE registry_db FROM PUBLIC;
GRANT CONNECT ON DATABASE registry_db TO registry_svc;
