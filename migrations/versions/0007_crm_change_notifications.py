"""CRM change notifications for the controller's routing index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

The controller can hold every CRM phone's routing attributes in memory (``crm.routing_index``)
so that no call waits for PostgreSQL before it is routed. These statement-level triggers tell
it what changed, on the ``cc_crm`` channel (``NOTIFY``, delivered at commit):

- ``p:<e164>,<e164>...``: phones added, changed or removed (``customer_phones``; deleting a
  customer removes its phones, which fires this too);
- ``c:<id>,<id>...``: customers whose routing attributes changed (``customers`` UPDATE);
- ``a:<id>,<id>...``: agents renamed (their customers' ``assigned_agent``);
- ``*``: more than 400 rows in one statement (a CSV import, a bulk update): reload everything.

One notification per statement, whatever its size: a 1M-row import sends ``*`` once, not a
million payloads (a payload must stay under 8000 bytes).
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIMIT = 400

FUNCTIONS = [f"""
CREATE FUNCTION cc_crm_notify(kind text, keys text[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF keys IS NULL OR cardinality(keys) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(keys) > {_LIMIT} THEN
        PERFORM pg_notify('cc_crm', '*');
    ELSE
        PERFORM pg_notify('cc_crm', kind || ':' || array_to_string(keys, ','));
    END IF;
END $$""", """
CREATE FUNCTION cc_crm_phones_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM cc_crm_notify('p', (SELECT array_agg(DISTINCT e164) FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM cc_crm_notify('p', (SELECT array_agg(DISTINCT e164) FROM old_rows));
    ELSE
        PERFORM cc_crm_notify('p', (SELECT array_agg(DISTINCT e164) FROM
            (SELECT e164 FROM new_rows UNION SELECT e164 FROM old_rows) AS both_sides));
    END IF;
    RETURN NULL;
END $$""", """
CREATE FUNCTION cc_crm_customers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cc_crm_notify('c', (SELECT array_agg(n.id::text) FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE (n.name, n.tier, n.segment, n.language, n.tags, n.assigned_agent_id, n.stage, n.do_not_call)
              IS DISTINCT FROM
              (o.name, o.tier, o.segment, o.language, o.tags, o.assigned_agent_id, o.stage, o.do_not_call)));
    RETURN NULL;
END $$""", """
CREATE FUNCTION cc_crm_agents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cc_crm_notify('a', (SELECT array_agg(n.id::text) FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.name IS DISTINCT FROM o.name));
    RETURN NULL;
END $$"""]

TRIGGERS = """
CREATE TRIGGER cc_crm_phones_ins AFTER INSERT ON customer_phones
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cc_crm_phones_changed();
CREATE TRIGGER cc_crm_phones_upd AFTER UPDATE ON customer_phones
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cc_crm_phones_changed();
CREATE TRIGGER cc_crm_phones_del AFTER DELETE ON customer_phones
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cc_crm_phones_changed();
CREATE TRIGGER cc_crm_customers_upd AFTER UPDATE ON customers
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cc_crm_customers_changed();
CREATE TRIGGER cc_crm_agents_upd AFTER UPDATE ON agents
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cc_crm_agents_changed();
"""


def upgrade() -> None:
    for function in FUNCTIONS:
        op.execute(function)
    for trigger in TRIGGERS.strip().split(";"):
        if trigger.strip():
            op.execute(trigger)


def downgrade() -> None:
    for trigger, table in (("cc_crm_phones_ins", "customer_phones"), ("cc_crm_phones_upd", "customer_phones"),
                           ("cc_crm_phones_del", "customer_phones"), ("cc_crm_customers_upd", "customers"),
                           ("cc_crm_agents_upd", "agents")):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for fn in ("cc_crm_phones_changed()", "cc_crm_customers_changed()", "cc_crm_agents_changed()",
               "cc_crm_notify(text, text[])"):
        op.execute(f"DROP FUNCTION {fn}")
