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

REFERENCE_DATA = Block(
    "reference data",
    """
INSERT INTO ref.countries (country_code, name, region, eu_member) VALUES
    ('AT', 'Austria', 'EMEA', true),        ('AU', 'Australia', 'APAC', false),
    ('BE', 'Belgium', 'EMEA', true),        ('BR', 'Brazil', 'AMER', false),
    ('CA', 'Canada', 'AMER', false),        ('CH', 'Switzerland', 'EMEA', false),
    ('CZ', 'Czechia', 'EMEA', true),        ('DE', 'Germany', 'EMEA', true),
    ('DK', 'Denmark', 'EMEA', true),        ('ES', 'Spain', 'EMEA', true),
    ('FI', 'Finland', 'EMEA', true),        ('FR', 'France', 'EMEA', true),
    ('GB', 'United Kingdom', 'EMEA', false), ('IE', 'Ireland', 'EMEA', true),
    ('IN', 'India', 'APAC', false),         ('IT', 'Italy', 'EMEA', true),
    ('JP', 'Japan', 'APAC', false),         ('MX', 'Mexico', 'AMER', false),
    ('NL', 'Netherlands', 'EMEA', true),    ('NO', 'Norway', 'EMEA', false),
    ('PL', 'Poland', 'EMEA', true),         ('PT', 'Portugal', 'EMEA', true),
    ('SE', 'Sweden', 'EMEA', true),         ('SG', 'Singapore', 'APAC', false),
    ('US', 'United States', 'AMER', false);

INSERT INTO ref.currencies (code, name, minor_units) VALUES
    ('CAD', 'Canadian Dollar', 2), ('CHF', 'Swiss Franc', 2), ('EUR', 'Euro', 2),
    ('GBP', 'Pound Sterling', 2),  ('JPY', 'Yen', 0),         ('PLN', 'Zloty', 2),
    ('SEK', 'Swedish Krona', 2),   ('USD', 'US Dollar', 2);

INSERT INTO hr.departments (department_id, name, cost_center) VALUES
    (1, 'Executive', 'CC-100'),  (2, 'Finance', 'CC-200'),     (3, 'Sales', 'CC-300'),
    (4, 'Marketing', 'CC-310'),  (5, 'Operations', 'CC-400'),  (6, 'Warehouse', 'CC-410'),
    (7, 'Engineering', 'CC-500'), (8, 'Data', 'CC-510'),       (9, 'Customer Care', 'CC-600'),
    (10, 'People', 'CC-700');

INSERT INTO inventory.warehouses (warehouse_id, code, city, country_code, opened_on) VALUES
    (1, 'BER1', 'Berlin', 'DE', '2014-03-01'),   (2, 'AMS1', 'Amsterdam', 'NL', '2016-09-15'),
    (3, 'MAD1', 'Madrid', 'ES', '2018-01-10'),   (4, 'WAW1', 'Warsaw', 'PL', '2019-06-01'),
    (5, 'LON1', 'London', 'GB', '2015-11-20'),   (6, 'EWR1', 'Newark', 'US', '2020-02-03'),
    (7, 'DFW1', 'Dallas', 'US', '2021-08-16'),   (8, 'SIN1', 'Singapore', 'SG', '2022-04-04');

INSERT INTO finance.accounts (account_id, account_code, name, account_type)
SELECT a,
       (1000 + a * 100)::text,
       t.account_type || ' account ' || a,
       t.account_type
FROM pg_catalog.generate_series(1, 40) AS a
CROSS JOIN LATERAL (
    SELECT CASE WHEN a <= 8 THEN 'asset' WHEN a <= 14 THEN 'liability'
                WHEN a <= 18 THEN 'equity' WHEN a <= 30 THEN 'revenue'
                ELSE 'expense' END AS account_type
) AS t
ORDER BY a;

INSERT INTO "Reporting Mart".kpi_targets (month, currency, target_revenue)
SELECT pg_catalog.make_date(2023 + m / 12, 1 + m % 12, 1),
       c.code,
       (500000 + pg_temp.hn('kpi.' || c.code, m, 250000))::numeric(18,4)
FROM pg_catalog.generate_series(0, 35) AS m
CROSS JOIN (VALUES ('EUR'), ('GBP'), ('USD')) AS c(code)
ORDER BY 1, 2;
""",
)

HR_DATA = Block(
    "hr data",
    """
INSERT INTO hr.employees
    (employee_id, manager_id, department_id, full_name, email, hired_on, salary, is_remote, skills)
SELECT i,
       CASE WHEN i = 1 THEN NULL ELSE 1 + pg_temp.hn('emp.manager', i, LEAST(i - 1, 25)) END,
       1 + pg_temp.hn('emp.dept', i, 10),
       p.first_name || ' ' || p.last_name,
       pg_temp.mailbox(p.first_name, p.last_name) || '.' || i || '@corp.example.com',
       date '2010-01-01' + pg_temp.hn('emp.hired', i, 5000)::integer,
       (40000 + pg_temp.hn('emp.salary', i, 120000) + pg_temp.hn('emp.cents', i, 100) / 100.0)::numeric(18,4),
       pg_temp.hn('emp.remote', i, 3) = 0,
       CASE WHEN i % 6 = 0 THEN NULL
            ELSE ARRAY[pg_temp.pick('emp.skill1', i, ARRAY['sql', 'python', 'excel', 'negotiation']),
                       pg_temp.pick('emp.skill2', i, ARRAY['forklift', 'german', 'spanish', 'tableau', 'go'])]
       END
FROM pg_catalog.generate_series(1, pg_temp.n('employees')) AS i
CROSS JOIN LATERAL (
    SELECT pg_temp.first_name('emp.first', i) AS first_name,
           pg_temp.last_name('emp.last', i) AS last_name
) AS p
ORDER BY i;
""",
)

CRM_DATA = Block(
    "crm data",
    """
INSERT INTO crm.customers
    (customer_code, full_name, email, country_code, segment, credit_limit,
     is_active, signup_date, profile, created_at, updated_at)
SELECT 'C' || pg_catalog.lpad(i::text, 8, '0'),
       p.first_name || ' ' || p.last_name,
       CASE WHEN i % 13 = 0 THEN NULL
            ELSE pg_temp.mailbox(p.first_name, p.last_name) || i || '@example.com'
       END,
       pg_temp.pick('cust.country', i, ARRAY[
           'DE', 'DE', 'DE', 'FR', 'FR', 'GB', 'GB', 'NL', 'ES', 'IT', 'PL', 'SE',
           'AT', 'CH', 'BE', 'DK', 'IE', 'US', 'US', 'US', 'CA', 'JP', 'SG', 'AU', 'BR']),
       pg_temp.pick('cust.segment', i, ARRAY[
           'consumer', 'consumer', 'consumer', 'smb', 'smb', 'enterprise', 'public_sector']),
       CASE WHEN i % 7 = 0 THEN NULL
            ELSE (pg_temp.hn('cust.credit', i, 5000000) / 100.0)::numeric(18,4)
       END,
       pg_temp.hn('cust.active', i, 20) <> 0,
       date '2015-01-01' + pg_temp.hn('cust.signup', i, 3650)::integer,
       CASE WHEN i % 11 = 0 THEN NULL
            ELSE pg_catalog.jsonb_build_object(
                'newsletter', pg_temp.hn('cust.newsletter', i, 2) = 1,
                'language', pg_temp.pick('cust.lang', i, ARRAY['en', 'de', 'fr', 'es', 'pl', 'sv', 'ja']),
                'score', pg_temp.hn('cust.score', i, 1000),
                'interests', pg_catalog.jsonb_build_array(
                    pg_temp.pick('cust.int1', i, ARRAY['outdoor', 'kitchen', 'garden', 'tech']),
                    pg_temp.pick('cust.int2', i, ARRAY['books', 'toys', 'fashion', 'sports'])))
       END,
       pg_temp.ts('cust.created', i, '2015-01-01 00:00:00+00', 3650),
       pg_temp.ts('cust.created', i, '2015-01-01 00:00:00+00', 3650)
           + pg_temp.hn('cust.updated', i, 400 * 86400) * interval '1 second'
FROM pg_catalog.generate_series(1, pg_temp.n('customers')) AS i
CROSS JOIN LATERAL (
    SELECT pg_temp.first_name('cust.first', i) AS first_name,
           pg_temp.last_name('cust.last', i) AS last_name
) AS p
ORDER BY i;

-- scanned contracts: large objects with fixed OIDs (reproducible), referenced
-- from an oid column
INSERT INTO crm.customer_documents
    (document_id, customer_id, file_name, mime_type, content_oid, byte_size)
SELECT d,
       1 + pg_temp.hn('cdoc.customer', d, pg_temp.n('customers')),
       'contract-' || pg_catalog.lpad(d::text, 6, '0') || '.pdf',
       'application/pdf',
       pg_catalog.lo_from_bytea(1000000 + d, c.content),
       pg_catalog.octet_length(c.content)
FROM pg_catalog.generate_series(1, pg_temp.n('customer_docs')) AS d
CROSS JOIN LATERAL (
    SELECT pg_catalog.convert_to('%PDF-1.4' || pg_catalog.chr(10), 'UTF8')
           || pg_catalog.decode(pg_catalog.string_agg(pg_temp.hx('cdoc.bytes', d * 100000 + k), '' ORDER BY k), 'hex')
           AS content
    FROM pg_catalog.generate_series(1, 512 + pg_temp.hn('cdoc.size', d, 3584)) AS k
) AS c
ORDER BY d;
""",
)

INVENTORY_DATA = Block(
    "inventory data",
    """
INSERT INTO inventory.products
    (product_id, sku, name, category, list_price, weight_grams, tags, dimensions_mm,
     discontinued, created_at, updated_at)
SELECT i,
       'SKU-' || pg_catalog.lpad(i::text, 7, '0'),
       pg_temp.pick('prod.adj', i, ARRAY['Classic', 'Compact', 'Deluxe', 'Eco', 'Pro', 'Ultra', 'Smart'])
           || ' ' || pg_temp.pick('prod.noun', i, ARRAY[
               'Kettle', 'Lamp', 'Backpack', 'Drill', 'Chair', 'Headphones', 'Tent', 'Blender'])
           || ' ' || (100 + pg_temp.hn('prod.model', i, 900)),
       pg_temp.pick('prod.category', i, ARRAY['home', 'outdoor', 'tools', 'electronics', 'furniture']),
       (pg_temp.hn('prod.price', i, 50000) + 99) / 100.0,
       CASE WHEN i % 9 = 0 THEN NULL ELSE 50 + pg_temp.hn('prod.weight', i, 20000)::integer END,
       CASE WHEN i % 7 = 0 THEN NULL
            WHEN i % 23 = 0 THEN '{}'::text[]
            ELSE ARRAY[pg_temp.pick('prod.tag1', i, ARRAY['new', 'sale', 'bestseller', 'limited']),
                       pg_temp.pick('prod.tag2', i, ARRAY['eco', 'imported', 'bundle', 'fragile'])]
       END,
       ARRAY[10 + pg_temp.hn('prod.dx', i, 990)::integer,
             10 + pg_temp.hn('prod.dy', i, 990)::integer,
             10 + pg_temp.hn('prod.dz', i, 990)::integer],
       pg_temp.hn('prod.discontinued', i, 20) = 0,
       pg_temp.ts('prod.created', i, '2018-01-01 00:00:00+00', 2000),
       pg_temp.ts('prod.created', i, '2018-01-01 00:00:00+00', 2000)
           + pg_temp.hn('prod.updated', i, 300 * 86400) * interval '1 second'
FROM pg_catalog.generate_series(1, pg_temp.n('products')) AS i
ORDER BY i;

-- three distinct warehouses per product
INSERT INTO inventory.stock_levels (warehouse_id, product_id, on_hand, reserved, last_counted_at)
SELECT 1 + (pg_temp.hn('stock.wh', p, 8) + 3 * k) % 8,
       p,
       pg_temp.hn('stock.on_hand', p * 3 + k, 500)::integer,
       pg_temp.hn('stock.reserved', p * 3 + k, 20)::integer,
       CASE WHEN (p + k) % 10 = 0 THEN NULL
            ELSE pg_temp.ts('stock.counted', p * 3 + k, '2025-01-01 00:00:00+00', 180)
       END
FROM pg_catalog.generate_series(1, pg_temp.n('products')) AS p
CROSS JOIN pg_catalog.generate_series(0, 2) AS k
ORDER BY p, k;
""",
)

SALES_DATA = Block(
    "sales data",
    """
INSERT INTO sales.orders
    (customer_id, status, order_date, ordered_at, currency, total_amount, is_gift,
     coupon_code, attributes, external_ref)
SELECT 1 + pg_temp.hn('ord.customer', o, pg_temp.n('customers')),
       pg_temp.pick('ord.status', o, ARRAY[
           'paid', 'shipped', 'shipped', 'shipped', 'shipped', 'pending', 'cancelled', 'returned'
       ])::sales.order_status,
       date '2023-01-01' + d.day,
       timestamptz '2023-01-01 00:00:00+00'
           + (d.day * 86400 + pg_temp.hn('ord.second', o, 86400)) * interval '1 second',
       pg_temp.pick('ord.currency', o, ARRAY[
           'EUR', 'EUR', 'EUR', 'EUR', 'USD', 'USD', 'GBP', 'CHF', 'SEK', 'PLN', 'JPY', 'CAD']),
       (pg_temp.hn('ord.total', o, 5000000) + 500) / 100.0,
       pg_temp.hn('ord.gift', o, 12) = 0,
       CASE WHEN pg_temp.hn('ord.coupon', o, 8) = 0
            THEN 'CPN-' || pg_catalog.upper(pg_catalog.substr(pg_temp.hx('ord.coupon_code', o), 1, 6))
       END,
       CASE WHEN o % 5 = 0 THEN NULL
            ELSE pg_catalog.jsonb_build_object(
                'channel', pg_temp.pick('ord.channel', o, ARRAY['web', 'web', 'app', 'marketplace', 'phone']),
                'device', pg_temp.pick('ord.device', o, ARRAY['desktop', 'ios', 'android']),
                'campaign', CASE WHEN o % 3 = 0 THEN NULL
                                 ELSE 'cmp-' || pg_temp.hn('ord.campaign', o, 40) END,
                'split_shipment', pg_temp.hn('ord.split', o, 9) = 0)
       END,
       pg_temp.hx('ord.external_ref', o)::uuid
FROM pg_catalog.generate_series(1, pg_temp.n('orders')) AS o
CROSS JOIN LATERAL (SELECT pg_temp.hn('ord.day', o, 1096)::integer AS day) AS d
ORDER BY o;

-- 1..4 lines per order (order_id values are the identity values 1..n)
INSERT INTO sales.order_lines (order_id, line_no, product_id, quantity, unit_price, discount_pct)
SELECT o,
       l,
       1 + pg_temp.hn('line.product', o * 8 + l, pg_temp.n('products')),
       1 + pg_temp.hn('line.qty', o * 8 + l, 12),
       (pg_temp.hn('line.price', o * 8 + l, 40000) + 99) / 100.0,
       CASE WHEN pg_temp.hn('line.discount', o * 8 + l, 4) = 0
            THEN pg_temp.hn('line.discount_pct', o * 8 + l, 3000) / 100.0
       END
FROM pg_catalog.generate_series(1, pg_temp.n('orders')) AS o
CROSS JOIN LATERAL pg_catalog.generate_series(1, 1 + pg_temp.hn('line.count', o, 4)) AS l
ORDER BY o, l;
""",
)

SALES_DOCUMENTS = Block(
    "sales documents",
    """
-- ordinary documents (a few KB of JSON) followed by bulk manifests (> 1 MB)
INSERT INTO sales.order_documents
    (document_id, order_id, kind, issued_at, doc_json, doc_bytes, checksum)
SELECT d.document_id, d.order_id, d.kind, d.issued_at, j.doc_json,
       pg_catalog.octet_length(j.doc_json),
       pg_catalog.sha256(pg_catalog.convert_to(j.doc_json, 'UTF8'))
FROM (
    SELECT i AS document_id,
           1 + pg_temp.hn('doc.order', i, pg_temp.n('orders')) AS order_id,
           pg_temp.pick('doc.kind', i, ARRAY[
               'invoice', 'invoice', 'packing_slip', 'customs_declaration', 'credit_note']) AS kind,
           pg_temp.ts('doc.issued', i, '2023-01-01 00:00:00+00', 1096) AS issued_at,
           20 + pg_temp.hn('doc.lines', i, 60) AS line_count
    FROM pg_catalog.generate_series(1, pg_temp.n('order_docs')) AS i
    UNION ALL
    SELECT pg_temp.n('order_docs') + i,
           1 + pg_temp.hn('doc.order', pg_temp.n('order_docs') + i, pg_temp.n('orders')),
           'bulk_manifest',
           pg_temp.ts('doc.issued', pg_temp.n('order_docs') + i, '2023-01-01 00:00:00+00', 1096),
           12000
    FROM pg_catalog.generate_series(1, pg_temp.n('big_docs')) AS i
) AS d
CROSS JOIN LATERAL (
    SELECT pg_catalog.json_build_object(
        'document_id', d.document_id,
        'kind', d.kind,
        'order_id', d.order_id,
        'issued_at', pg_catalog.to_char(d.issued_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'issuer', pg_catalog.json_build_object(
            'name', 'Example Retail GmbH', 'vat_id', 'DE123456789', 'city', 'Berlin'),
        'lines', (
            SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                       'line', l,
                       'sku', 'SKU-' || pg_catalog.lpad(
                           (1 + pg_temp.hn('doc.sku', d.document_id * 100000 + l,
                                           pg_temp.n('products')))::text, 7, '0'),
                       'qty', 1 + pg_temp.hn('doc.qty', d.document_id * 100000 + l, 20),
                       'unit_price', pg_catalog.round(
                           pg_temp.hn('doc.price', d.document_id * 100000 + l, 100000) / 100.0, 2),
                       'digest', pg_temp.hx('doc.digest', d.document_id * 100000 + l))
                   ORDER BY l)
            FROM pg_catalog.generate_series(1, d.line_count) AS l),
        'notes', CASE WHEN d.document_id % 3 = 0 THEN NULL
                      ELSE 'Ref ' || pg_temp.hx('doc.notes', d.document_id) END
    )::text AS doc_json
) AS j
ORDER BY d.document_id;
""",
)

ANALYTICS_DATA = Block(
    "analytics data",
    """
-- rows that were never routed to a child stay in the parent
INSERT INTO analytics.events (occurred_at, event_type, customer_id, session_id, payload)
SELECT occurred_at, event_type, customer_id, session_id, payload
FROM pg_temp.event_rows('ev.parent', pg_temp.n('events_parent'), '2022-01-01 00:00:00+00', 1461);

INSERT INTO archive.events_2023 (occurred_at, event_type, customer_id, session_id, payload)
SELECT occurred_at, event_type, customer_id, session_id, payload
FROM pg_temp.event_rows('ev.2023', pg_temp.n('events_2023'), '2023-01-01 00:00:00+00', 365);

INSERT INTO analytics.events_2024 (occurred_at, event_type, customer_id, session_id, payload)
SELECT occurred_at, event_type, customer_id, session_id, payload
FROM pg_temp.event_rows('ev.2024', pg_temp.n('events_2024'), '2024-01-01 00:00:00+00', 366);

INSERT INTO analytics.events_2025 (occurred_at, event_type, customer_id, session_id, payload)
SELECT occurred_at, event_type, customer_id, session_id, payload
FROM pg_temp.event_rows('ev.2025', pg_temp.n('events_2025'), '2025-01-01 00:00:00+00', 365);

-- imported with their own id range, not from the parent's sequence
INSERT INTO analytics.events_legacy
    (event_id, occurred_at, event_type, customer_id, session_id, payload, legacy_source)
SELECT 9000000000 + i, occurred_at, event_type, customer_id, session_id, payload,
       pg_temp.pick('ev.legacy.source', i, ARRAY['clickstream-v1', 'clickstream-v1', 'pixel-2019'])
FROM pg_temp.event_rows('ev.legacy', pg_temp.n('events_legacy'), '2021-01-01 00:00:00+00', 365);
""",
)

FINANCE_DATA = Block(
    "finance data",
    """
-- routed through the partitioned parent into all three partitions
INSERT INTO finance.ledger_entries
    (entry_id, entry_date, account_id, order_id, amount, currency, memo, posted)
SELECT i,
       date '2023-01-01' + pg_temp.hn('led.date', i, 1096)::integer,
       1 + pg_temp.hn('led.account', i, 40),
       CASE WHEN pg_temp.hn('led.has_order', i, 3) > 0
            THEN 1 + pg_temp.hn('led.order', i, pg_temp.n('orders'))
       END,
       (pg_temp.hn('led.amount', i, 2000000) - 1000000) / 100.0,
       pg_temp.pick('led.currency', i, ARRAY['EUR', 'EUR', 'EUR', 'USD', 'GBP']),
       CASE WHEN i % 4 = 0
            THEN 'Posting batch ' || pg_temp.hn('led.batch', i, 9999) || ' / '
                 || pg_catalog.substr(pg_temp.hx('led.memo', i), 1, 12)
       END,
       pg_temp.hn('led.posted', i, 50) <> 0
FROM pg_catalog.generate_series(1, pg_temp.n('ledger')) AS i
ORDER BY i;
""",
)

STAGING_DATA = Block(
    "staging data",
    """
-- every 50th row repeats the previous one exactly (no key to tell them apart)
INSERT INTO staging.raw_clicks (received_at, source_ip, url, user_agent, raw_line)
SELECT pg_temp.ts('clk.at', k, '2025-06-01 00:00:00+00', 30),
       CASE WHEN k % 10 = 0 THEN NULL
            ELSE ('10.' || pg_temp.hn('clk.ip1', k, 256) || '.' || pg_temp.hn('clk.ip2', k, 256)
                  || '.' || (1 + pg_temp.hn('clk.ip3', k, 254)))::inet
       END,
       'https://shop.example.com/p/' || pg_temp.hn('clk.path', k, 5000)
           || '?utm_source=' || pg_temp.pick('clk.utm', k, ARRAY['google', 'newsletter', 'partner']),
       CASE WHEN k % 17 = 0 THEN NULL
            ELSE pg_temp.pick('clk.ua', k, ARRAY[
                'Mozilla/5.0 (Windows NT 10.0; Win64; x64)',
                'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)',
                'Mozilla/5.0 (X11; Linux x86_64)',
                'curl/8.5.0'])
       END,
       'GET /p/' || pg_temp.hn('clk.path', k, 5000) || ' HTTP/1.1 200 '
           || pg_temp.hn('clk.bytes', k, 90000) || ' ' || pg_temp.hx('clk.trace', k)
FROM pg_catalog.generate_series(1, pg_temp.n('raw_clicks')) AS i
CROSS JOIN LATERAL (SELECT CASE WHEN i % 50 = 0 THEN i - 1 ELSE i END AS k) AS dup
ORDER BY i;
""",
)

INDEXES = Block(
    "indexes",
    """
CREATE UNIQUE INDEX orders_order_no_key ON sales.orders (order_no);
CREATE INDEX orders_customer_id_idx ON sales.orders (customer_id);
CREATE INDEX orders_pending_date_idx ON sales.orders (order_date) WHERE status = 'pending';
CREATE INDEX order_lines_product_id_idx ON sales.order_lines (product_id);
CREATE INDEX order_documents_order_id_idx ON sales.order_documents (order_id);

CREATE INDEX customers_email_lower_idx ON crm.customers (pg_catalog.lower(email));
CREATE INDEX customer_documents_customer_id_idx ON crm.customer_documents (customer_id);

CREATE UNIQUE INDEX products_sku_key ON inventory.products (sku);
CREATE INDEX products_tags_gin_idx ON inventory.products USING gin (tags);
CREATE UNIQUE INDEX warehouses_code_key ON inventory.warehouses (code);

CREATE INDEX employees_manager_id_idx ON hr.employees (manager_id);

CREATE INDEX events_occurred_at_idx ON analytics.events (occurred_at);
CREATE INDEX events_2024_occurred_at_idx ON analytics.events_2024 (occurred_at);
CREATE INDEX events_2025_occurred_at_idx ON analytics.events_2025 (occurred_at);

-- partitioned index: cascades to every partition, including the archived one
CREATE INDEX ledger_entries_account_date_idx ON finance.ledger_entries (account_id, entry_date);
""",
)

CONSTRAINTS = Block(
    "foreign keys",
    """
ALTER TABLE hr.employees
    ADD CONSTRAINT employees_manager_id_fkey
        FOREIGN KEY (manager_id) REFERENCES hr.employees (employee_id),
    ADD CONSTRAINT employees_department_id_fkey
        FOREIGN KEY (department_id) REFERENCES hr.departments (department_id);

ALTER TABLE crm.customers
    ADD CONSTRAINT customers_country_code_fkey
        FOREIGN KEY (country_code) REFERENCES ref.countries (country_code);
ALTER TABLE crm.customer_documents
    ADD CONSTRAINT customer_documents_customer_id_fkey
        FOREIGN KEY (customer_id) REFERENCES crm.customers (customer_id) ON DELETE CASCADE;

ALTER TABLE inventory.warehouses
    ADD CONSTRAINT warehouses_country_code_fkey
        FOREIGN KEY (country_code) REFERENCES ref.countries (country_code);
ALTER TABLE inventory.stock_levels
    ADD CONSTRAINT stock_levels_warehouse_id_fkey
        FOREIGN KEY (warehouse_id) REFERENCES inventory.warehouses (warehouse_id),
    ADD CONSTRAINT stock_levels_product_id_fkey
        FOREIGN KEY (product_id) REFERENCES inventory.products (product_id);

ALTER TABLE sales.orders
    ADD CONSTRAINT orders_customer_id_fkey
        FOREIGN KEY (customer_id) REFERENCES crm.customers (customer_id),
    ADD CONSTRAINT orders_currency_fkey
        FOREIGN KEY (currency) REFERENCES ref.currencies (code);
ALTER TABLE sales.order_lines
    ADD CONSTRAINT order_lines_order_id_fkey
        FOREIGN KEY (order_id) REFERENCES sales.orders (order_id) ON DELETE CASCADE,
    ADD CONSTRAINT order_lines_product_id_fkey
        FOREIGN KEY (product_id) REFERENCES inventory.products (product_id);
ALTER TABLE sales.order_documents
    ADD CONSTRAINT order_documents_order_id_fkey
        FOREIGN KEY (order_id) REFERENCES sales.orders (order_id);

ALTER TABLE finance.ledger_entries
    ADD CONSTRAINT ledger_entries_account_id_fkey
        FOREIGN KEY (account_id) REFERENCES finance.accounts (account_id),
    ADD CONSTRAINT ledger_entries_currency_fkey
        FOREIGN KEY (currency) REFERENCES ref.currencies (code);

ALTER TABLE "Reporting Mart".kpi_targets
    ADD CONSTRAINT kpi_targets_currency_fkey
        FOREIGN KEY (currency) REFERENCES ref.currencies (code);
""",
)

TRIGGERS = Block(
    "triggers",
    """
CREATE TRIGGER customers_touch_updated_at
    BEFORE UPDATE ON crm.customers
    FOR EACH ROW EXECUTE FUNCTION util.touch_updated_at();

CREATE TRIGGER products_touch_updated_at
    BEFORE UPDATE ON inventory.products
    FOR EACH ROW EXECUTE FUNCTION util.touch_updated_at();
""",
)

VIEWS = Block(
    "views",
    """
ALTER DEFAULT PRIVILEGES IN SCHEMA "Reporting Mart" GRANT SELECT ON TABLES TO wh_reader;

-- a view in one schema over tables of three others
CREATE VIEW "Reporting Mart".customer_order_summary AS
SELECT c.customer_id,
       c.full_name,
       c.country_code,
       co.name AS country_name,
       co.region,
       count(o.order_id) AS order_count,
       coalesce(sum(o.total_amount), 0) AS lifetime_value,
       max(o.order_date) AS last_order_date
FROM crm.customers AS c
JOIN ref.countries AS co ON co.country_code = c.country_code
LEFT JOIN sales.orders AS o
       ON o.customer_id = c.customer_id AND o.status <> 'cancelled'
GROUP BY c.customer_id, c.full_name, c.country_code, co.name, co.region;

CREATE MATERIALIZED VIEW "Reporting Mart".monthly_revenue AS
SELECT o.order_date - (EXTRACT(day FROM o.order_date)::integer - 1) AS month,
       util.fiscal_quarter(o.order_date) AS fiscal_quarter,
       o.currency::text AS currency,
       count(*) AS order_count,
       sum(o.total_amount) AS revenue
FROM sales.orders AS o
WHERE o.status IN ('paid', 'shipped')
GROUP BY 1, 2, 3
WITH DATA;

CREATE UNIQUE INDEX monthly_revenue_month_currency_key
    ON "Reporting Mart".monthly_revenue (month, currency);
""",
)

COMMENTS = Block(
    "comments",
    """
COMMENT ON SCHEMA sales IS 'Order-to-cash: orders, order lines and order documents (the biggest schema)';
COMMENT ON SCHEMA analytics IS 'Clickstream events, partitioned the old way (table inheritance)';
COMMENT ON SCHEMA finance IS 'General ledger, range-partitioned by entry date';
COMMENT ON SCHEMA crm IS 'Customers and their scanned contracts (large objects)';
COMMENT ON SCHEMA inventory IS 'Products and stock per warehouse';
COMMENT ON SCHEMA archive IS 'Cold data: old event child table and old ledger partition';
COMMENT ON SCHEMA staging IS 'Raw landing tables, no keys';
COMMENT ON SCHEMA hr IS 'Employees and departments';
COMMENT ON SCHEMA ref IS 'Reference data shared by all other schemas';
COMMENT ON SCHEMA "Reporting Mart" IS 'BI layer: views, a materialized view and targets';
COMMENT ON SCHEMA util IS 'Shared functions';
COMMENT ON SCHEMA sandbox IS 'Intentionally empty';

COMMENT ON TABLE sales.orders IS 'One row per customer order';
COMMENT ON COLUMN sales.orders.order_no IS 'Human-readable number from sales.order_number_seq';
COMMENT ON COLUMN sales.orders.total_amount IS 'Gross amount in the order currency';
COMMENT ON TABLE sales.order_documents IS 'Documents as JSON text, exactly as received';
COMMENT ON COLUMN sales.order_documents.doc_json IS 'JSON document stored as text; bulk manifests exceed 1 MB';
COMMENT ON TABLE crm.customers IS 'Customer master data';
COMMENT ON COLUMN crm.customers.profile IS 'Preferences captured at sign-up (jsonb)';
COMMENT ON COLUMN crm.customer_documents.content_oid IS 'Large object holding the PDF';
COMMENT ON TABLE analytics.events IS 'Parent of the yearly event tables; holds unrouted events itself';
COMMENT ON TABLE analytics.events_legacy IS
    'Attached with ALTER TABLE ... INHERIT; column order differs from the parent';
COMMENT ON TABLE finance.ledger_entries IS 'Partitioned by entry_date; 2023 lives in archive';
COMMENT ON TABLE staging.raw_clicks IS 'No primary key; duplicate rows are expected';
COMMENT ON VIEW "Reporting Mart".customer_order_summary IS 'Lifetime value per customer';
COMMENT ON MATERIALIZED VIEW "Reporting Mart".monthly_revenue IS 'Revenue per month and currency';
COMMENT ON FUNCTION util.fiscal_quarter(date) IS 'Fiscal quarter label, fiscal year starting 1 April';
""",
)

PRIVILEGES = Block(
    "privileges",
    """
GRANT USAGE ON SCHEMA ref, sales, crm, analytics, "Reporting Mart" TO wh_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA ref TO wh_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA "Reporting Mart" TO wh_reader;
GRANT SELECT ON sales.orders, sales.order_lines, analytics.events TO wh_reader;
GRANT SELECT (customer_id, full_name, country_code, segment) ON crm.customers TO wh_reader;

GRANT USAGE ON SCHEMA sales, crm, util TO wh_writer;
GRANT SELECT, INSERT, UPDATE ON sales.orders, sales.order_lines TO wh_writer;
GRANT SELECT ON crm.customers TO wh_writer;
GRANT USAGE ON SEQUENCE sales.order_number_seq TO wh_writer;

REVOKE EXECUTE ON FUNCTION util.fiscal_quarter(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION util.fiscal_quarter(date) TO wh_writer;
""",
)

DATABASE_SETTINGS = Block(
    "database settings",
    """
DO $do$
BEGIN
    EXECUTE pg_catalog.format(
        'ALTER DATABASE %I SET search_path = "$user", public, sales, crm, %I',
        pg_catalog.current_database(), 'Reporting Mart');
END
$do$;
""",
)

# Executed in this order inside one transaction.
LOAD_BLOCKS: tuple[Block, ...] = (
    HELPERS,
    SCHEMAS,
    FUNCTIONS,
    TABLES,
    REFERENCE_DATA,
    HR_DATA,
    CRM_DATA,
    INVENTORY_DATA,
    SALES_DATA,
    SALES_DOCUMENTS,
    ANALYTICS_DATA,
    FINANCE_DATA,
    STAGING_DATA,
    INDEXES,
    CONSTRAINTS,
    TRIGGERS,
    VIEWS,
    COMMENTS,
    PRIVILEGES,
    DATABASE_SETTINGS,
)
