"""SQL blocks that build the demo warehouse.

Every block is static SQL text: identifiers are written out (quoted where
needed) and nothing is spliced in from Python.  Volumes and the seed reach the
server as custom settings (``demo_wh.n_<name>``, ``demo_wh.seed``) that the
session-local helper functions below read, so the same block serves every
scale.

All data is a pure function of (seed, row number): ``md5`` of a salted key for
"random" choices, fixed base timestamps written with an explicit ``+00``
offset, exact numeric arithmetic.  No ``random()``, no ``now()``, nothing that
depends on the session time zone, the locale or the plan shape.  Rows are
inserted in ``generate_series`` order from a single session, so serial,
identity and sequence values are reproducible too.

The loading session runs with ``search_path = pg_catalog, pg_temp``; every
object is therefore schema-qualified.
"""

from __future__ import annotations

from typing import NamedTuple


class Block(NamedTuple):
    name: str
    sql: str


# Cluster-wide roles.  Run on their own, in autocommit mode, before the load
# transaction so that two loaders never wait on each other's CREATE ROLE.
ROLES = Block(
    "roles",
    """
DO $do$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['wh_reader', 'wh_writer'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by another loader
            END;
        END IF;
    END LOOP;
END
$do$;
""",
)

# Session-local generators.  They live in pg_temp, disappear with the loading
# session and no persistent object refers to them.
HELPERS = Block(
    "helpers",
    """
CREATE FUNCTION pg_temp.n(name text) RETURNS bigint
    LANGUAGE sql STABLE
    AS $fn$ SELECT pg_catalog.current_setting('demo_wh.n_' || name)::bigint $fn$;

-- 32 hex digits, a pure function of (seed, salt, i)
CREATE FUNCTION pg_temp.hx(salt text, i bigint) RETURNS text
    LANGUAGE sql STABLE
    AS $fn$
        SELECT pg_catalog.md5(pg_catalog.current_setting('demo_wh.seed') || '/' || salt || '/' || i)
    $fn$;

-- an integer in [0, n)
CREATE FUNCTION pg_temp.hn(salt text, i bigint, n bigint) RETURNS bigint
    LANGUAGE sql STABLE
    AS $fn$
        SELECT ('x' || pg_catalog.substr(pg_temp.hx(salt, i), 1, 8))::bit(32)::bigint % n
    $fn$;

-- one element of options
CREATE FUNCTION pg_temp.pick(salt text, i bigint, options text[]) RETURNS text
    LANGUAGE sql STABLE
    AS $fn$
        SELECT options[(1 + pg_temp.hn(salt, i, pg_catalog.cardinality(options)))::integer]
    $fn$;

-- a whole second in [base, base + days)
CREATE FUNCTION pg_temp.ts(salt text, i bigint, base timestamptz, days integer) RETURNS timestamptz
    LANGUAGE sql STABLE
    AS $fn$ SELECT base + pg_temp.hn(salt, i, days * 86400::bigint) * interval '1 second' $fn$;

CREATE FUNCTION pg_temp.first_name(salt text, i bigint) RETURNS text
    LANGUAGE sql STABLE
    AS $fn$
        SELECT pg_temp.pick(salt, i, ARRAY[
            'Anna', 'Ben', 'Chloe', 'David', 'Elif', 'Farid', 'Greta', 'Hiro', 'Ines',
            'Jonas', 'Kofi', 'Lena', 'Mateo', 'Nora', 'Oskar', 'Priya', 'Quentin',
            'Rosa', 'Sven', 'Tara', 'Umar', 'Vera', 'Wei', 'Xenia', 'Yusuf', 'Zoë'])
    $fn$;

CREATE FUNCTION pg_temp.last_name(salt text, i bigint) RETURNS text
    LANGUAGE sql STABLE
    AS $fn$
        SELECT pg_temp.pick(salt, i, ARRAY[
            'Andersen', 'Becker', 'Costa', 'Dubois', 'Eriksson', 'Fischer', 'García',
            'Hoffmann', 'Ivanova', 'Jansen', 'Kowalski', 'Larsen', 'Müller', 'Novak',
            'Olsen', 'Petrov', 'Quinn', 'Rossi', 'Schmidt', 'Tanaka', 'Ueda', 'Vogel',
            'Weber', 'Xu', 'Yılmaz', 'Zimmermann'])
    $fn$;

-- ASCII local part for e-mail addresses
CREATE FUNCTION pg_temp.mailbox(first_name text, last_name text) RETURNS text
    LANGUAGE sql STABLE
    AS $fn$
        SELECT pg_catalog.translate(
            pg_catalog.lower(first_name || '.' || last_name), 'ëíüöäáçı', 'eiuoaaci')
    $fn$;

-- clickstream rows shared by the events parent and all of its children
CREATE FUNCTION pg_temp.event_rows(salt text, n bigint, base timestamptz, days integer)
    RETURNS TABLE (i bigint, occurred_at timestamptz, event_type text,
                   customer_id integer, session_id uuid, payload jsonb)
    LANGUAGE sql STABLE
    AS $fn$
        SELECT g.i,
               pg_temp.ts(salt || '.at', g.i, base, days),
               pg_temp.pick(salt || '.type', g.i, ARRAY[
                   'page_view', 'page_view', 'page_view', 'search', 'add_to_cart',
                   'checkout', 'login']),
               CASE WHEN g.i % 4 = 0 THEN NULL
                    ELSE (1 + pg_temp.hn(salt || '.customer', g.i, pg_temp.n('customers')))::integer
               END,
               pg_temp.hx(salt || '.session', g.i / 5)::uuid,
               pg_catalog.jsonb_build_object(
                   'path', '/p/' || pg_temp.hn(salt || '.path', g.i, 5000),
                   'duration_ms', pg_temp.hn(salt || '.ms', g.i, 3000),
                   'ab_bucket', pg_temp.pick(salt || '.ab', g.i, ARRAY['A', 'B', 'control']),
                   'referrer', CASE WHEN g.i % 3 = 0 THEN NULL
                                    ELSE pg_temp.pick(salt || '.ref', g.i, ARRAY[
                                        'google', 'newsletter', 'direct', 'partner'])
                               END)
        FROM pg_catalog.generate_series(1, n) AS g(i)
        ORDER BY g.i
    $fn$;
""",
)

SCHEMAS = Block(
    "schemas",
    """
CREATE SCHEMA sales;
CREATE SCHEMA analytics;
CREATE SCHEMA finance;
CREATE SCHEMA crm;
CREATE SCHEMA inventory;
CREATE SCHEMA archive;
CREATE SCHEMA staging;
CREATE SCHEMA hr;
CREATE SCHEMA ref;
CREATE SCHEMA "Reporting Mart";
CREATE SCHEMA util;
CREATE SCHEMA sandbox;  -- stays empty on purpose

CREATE TYPE sales.order_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled', 'returned');

CREATE DOMAIN ref.currency_code AS text
    CONSTRAINT currency_code_format CHECK (VALUE ~ '^[A-Z]{3}$');

-- standalone sequence, consumed by a column default (sales.orders.order_no)
CREATE SEQUENCE sales.order_number_seq START WITH 100001 CACHE 1;
""",
)

FUNCTIONS = Block(
    "functions",
    """
CREATE FUNCTION util.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $fn$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

-- fiscal years start on 1 April and are named after the calendar year they end in
CREATE FUNCTION util.fiscal_quarter(d date) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT 'FY' || EXTRACT(year FROM d + interval '9 months')::integer
        || '-Q' || EXTRACT(quarter FROM d + interval '9 months')::integer
$fn$;
""",
)

TABLES = Block(
    "tables",
    """
-- ---------------------------------------------------------------- ref
CREATE TABLE ref.countries (
    country_code char(2) PRIMARY KEY,
    name         text    NOT NULL,
    region       text    NOT NULL,
    eu_member    boolean NOT NULL
);

CREATE TABLE ref.currencies (
    code        ref.currency_code PRIMARY KEY,
    name        text     NOT NULL,
    minor_units smallint NOT NULL
);

-- ---------------------------------------------------------------- hr
CREATE TABLE hr.departments (
    department_id smallint PRIMARY KEY,
    name          text NOT NULL,
    cost_center   text NOT NULL
);

CREATE TABLE hr.employees (
    employee_id   integer PRIMARY KEY,
    manager_id    integer,                    -- self-referencing FK
    department_id smallint NOT NULL,
    full_name     text NOT NULL,
    email         text NOT NULL,
    hired_on      date NOT NULL,
    salary        numeric(18,4) NOT NULL,
    is_remote     boolean NOT NULL,
    skills        text[]
);

-- ---------------------------------------------------------------- crm
CREATE TABLE crm.customers (
    customer_id   serial PRIMARY KEY,
    customer_code text NOT NULL CONSTRAINT customers_customer_code_key UNIQUE,
    full_name     text NOT NULL,
    email         text,
    country_code  char(2) NOT NULL,
    segment       text NOT NULL,
    credit_limit  numeric(18,4),
    is_active     boolean NOT NULL DEFAULT true,
    signup_date   date NOT NULL,
    profile       jsonb,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE crm.customer_documents (
    document_id integer PRIMARY KEY,
    customer_id integer NOT NULL,
    file_name   text    NOT NULL,
    mime_type   text    NOT NULL,
    content_oid oid     NOT NULL,             -- large object
    byte_size   integer NOT NULL
);

-- ---------------------------------------------------------------- inventory
CREATE TABLE inventory.warehouses (
    warehouse_id smallint PRIMARY KEY,
    code         text    NOT NULL,
    city         text    NOT NULL,
    country_code char(2) NOT NULL,
    opened_on    date    NOT NULL
);

CREATE TABLE inventory.products (
    product_id    integer PRIMARY KEY,
    sku           text NOT NULL,
    name          text NOT NULL,
    category      text NOT NULL,
    list_price    numeric(18,4) NOT NULL,
    weight_grams  integer,
    tags          text[],
    dimensions_mm integer[],
    discontinued  boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE inventory.stock_levels (
    warehouse_id    smallint NOT NULL,
    product_id      integer  NOT NULL,
    on_hand         integer  NOT NULL,
    reserved        integer  NOT NULL DEFAULT 0,
    last_counted_at timestamptz,
    PRIMARY KEY (warehouse_id, product_id)
);

-- ---------------------------------------------------------------- sales
CREATE TABLE sales.orders (
    order_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_no     text NOT NULL
                 DEFAULT 'SO-' || pg_catalog.lpad(pg_catalog.nextval('sales.order_number_seq')::text, 9, '0'),
    customer_id  integer NOT NULL,
    status       sales.order_status NOT NULL DEFAULT 'pending',
    order_date   date NOT NULL,
    ordered_at   timestamptz NOT NULL,
    currency     ref.currency_code NOT NULL,
    total_amount numeric(18,4) NOT NULL,
    is_gift      boolean NOT NULL DEFAULT false,
    coupon_code  text,
    attributes   jsonb,
    external_ref uuid NOT NULL
);

CREATE TABLE sales.order_lines (
    order_id     bigint   NOT NULL,
    line_no      smallint NOT NULL,
    product_id   integer  NOT NULL,
    quantity     integer  NOT NULL,
    unit_price   numeric(18,4) NOT NULL,
    discount_pct numeric(5,2),
    PRIMARY KEY (order_id, line_no)
);

-- JSON kept as TEXT (as exported by the legacy order system); some > 1 MB
CREATE TABLE sales.order_documents (
    document_id integer PRIMARY KEY,
    order_id    bigint NOT NULL,
    kind        text NOT NULL,
    issued_at   timestamptz NOT NULL,
    doc_json    text NOT NULL,
    doc_bytes   integer NOT NULL,
    checksum    bytea NOT NULL
);

-- ---------------------------------------------------------------- analytics
-- classic inheritance: the parent holds rows too
CREATE TABLE analytics.events (
    event_id    bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event_type  text NOT NULL,
    customer_id integer,
    session_id  uuid,
    payload     jsonb
);

CREATE TABLE archive.events_2023 (
    PRIMARY KEY (event_id),
    CONSTRAINT events_2023_occurred_at_check
        CHECK (occurred_at >= '2023-01-01 00:00:00+00' AND occurred_at < '2024-01-01 00:00:00+00')
) INHERITS (analytics.events);

CREATE TABLE analytics.events_2024 (
    PRIMARY KEY (event_id),
    CONSTRAINT events_2024_occurred_at_check
        CHECK (occurred_at >= '2024-01-01 00:00:00+00' AND occurred_at < '2025-01-01 00:00:00+00')
) INHERITS (analytics.events);

CREATE TABLE analytics.events_2025 (
    PRIMARY KEY (event_id),
    CONSTRAINT events_2025_occurred_at_check
        CHECK (occurred_at >= '2025-01-01 00:00:00+00' AND occurred_at < '2026-01-01 00:00:00+00')
) INHERITS (analytics.events);

-- column-order trap: created on its own with its own column order (and an
-- extra column), attached to the parent afterwards with ALTER TABLE ... INHERIT
CREATE TABLE analytics.events_legacy (
    payload       jsonb,
    legacy_source text NOT NULL DEFAULT 'clickstream-v1',
    customer_id   integer,
    event_type    text NOT NULL,
    session_id    uuid,
    occurred_at   timestamptz NOT NULL,
    event_id      bigint NOT NULL PRIMARY KEY
);
ALTER TABLE analytics.events_legacy INHERIT analytics.events;

-- ---------------------------------------------------------------- finance
CREATE TABLE finance.accounts (
    account_id   integer PRIMARY KEY,
    account_code text NOT NULL CONSTRAINT accounts_account_code_key UNIQUE,
    name         text NOT NULL,
    account_type text NOT NULL CONSTRAINT accounts_account_type_check
                 CHECK (account_type IN ('asset', 'liability', 'equity', 'revenue', 'expense'))
);

-- declarative range partitioning; the oldest partition lives in "archive"
CREATE TABLE finance.ledger_entries (
    entry_id   bigint  NOT NULL,
    entry_date date    NOT NULL,
    account_id integer NOT NULL,
    order_id   bigint,
    amount     numeric(18,4) NOT NULL,
    currency   ref.currency_code NOT NULL,
    memo       text,
    posted     boolean NOT NULL DEFAULT true,
    PRIMARY KEY (entry_id, entry_date)
) PARTITION BY RANGE (entry_date);

CREATE TABLE archive.ledger_entries_2023 PARTITION OF finance.ledger_entries
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE finance.ledger_entries_2024 PARTITION OF finance.ledger_entries
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE finance.ledger_entries_2025 PARTITION OF finance.ledger_entries
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');

-- ---------------------------------------------------------------- staging
-- landing table without a primary key; contains exact duplicate rows
CREATE TABLE staging.raw_clicks (
    received_at timestamptz NOT NULL,
    source_ip   inet,
    url         text NOT NULL,
    user_agent  text,
    raw_line    text NOT NULL
);

-- ---------------------------------------------------------------- "Reporting Mart"
CREATE TABLE "Reporting Mart".kpi_targets (
    month          date NOT NULL,
    currency       ref.currency_code NOT NULL,
    target_revenue numeric(18,4) NOT NULL,
    PRIMARY KEY (month, currency)
);
""",
)
