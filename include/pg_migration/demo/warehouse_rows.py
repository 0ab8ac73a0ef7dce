"""The demo warehouse's data blocks (see :mod:`.warehouse_sql` for the rules every block follows)."""

from __future__ import annotations

from .warehouse_sql import Block

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
