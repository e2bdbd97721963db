-- Run after every migration (compose service grafana-grants), as the tables' owner: Grafana
-- reads every table the boards use, and never the API keys or the audit log.
\set ON_ERROR_STOP on
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader;
REVOKE ALL ON api_keys, audit_log FROM grafana_reader;
