-- One database and one login role per component; CONNECT revoked from PUBLIC, so each role
-- is refused on every database but its own (docs/architecture.md, "Databases and roles").
--
-- One source for both stacks: the postgres image's entrypoint runs it once on an empty data
-- directory (docker-compose.yml, /docker-entrypoint-initdb.d, psql autocommit), and the
-- local stack runs it statement by statement on every `up` (crates/stack/src/postgres.rs),
-- skipping roles and databases that already exist. Keep one statement per `;`, comments on
-- lines of their own. deploy/validate.sh fails when it drifts from crates/stack/src/catalog.rs.
-- Passwords are the documented development passwords: change them (and the services'
-- APP_DATABASE__URL) for anything but a demo on your own machine.

-- Without this, every role could still connect to the `postgres` maintenance database.
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;

CREATE ROLE order_svc LOGIN PASSWORD 'order_svc';
CREATE DATABASE order_db OWNER order_svc;
REVOKE CONNECT ON DATABASE order_db FROM PUBLIC;
GRANT CONNECT ON DATABASE order_db TO order_svc;

CREATE ROLE inventory_svc LOGIN PASSWORD 'inventory_svc';
CREATE DATABASE inventory_db OWNER inventory_svc;
REVOKE CONNECT ON DATABASE inventory_db FROM PUBLIC;
GRANT CONNECT ON DATABASE inventory_db TO inventory_svc;

CREATE ROLE payment_svc LOGIN PASSWORD 'payment_svc';
CREATE DATABASE payment_db OWNER payment_svc;
REVOKE CONNECT ON DATABASE payment_db FROM PUBLIC;
GRANT CONNECT ON DATABASE payment_db TO payment_svc;

CREATE ROLE shipping_svc LOGIN PASSWORD 'shipping_svc';
CREATE DATABASE shipping_db OWNER shipping_svc;
REVOKE CONNECT ON DATABASE shipping_db FROM PUBLIC;
GRANT CONNECT ON DATABASE shipping_db TO shipping_svc;

CREATE ROLE orchestrator_svc LOGIN PASSWORD 'orchestrator_svc';
CREATE DATABASE orchestrator_db OWNER orchestrator_svc;
REVOKE CONNECT ON DATABASE orchestrator_db FROM PUBLIC;
GRANT CONNECT ON DATABASE orchestrator_db TO orchestrator_svc;

CREATE ROLE registry_svc LOGIN PASSWORD 'registry_svc';
CREATE DATABASE registry_db OWNER registry_svc;
REVOKE CONNECT ON DATABASE registry_db FROM PUBLIC;
GRANT CONNECT ON DATABASE registry_db TO registry_svc;
