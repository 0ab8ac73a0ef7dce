"""The demo warehouse's indexes, constraints, triggers, views, comments, privileges and settings
(see :mod:`.warehouse_sql` for the rules every block follows)."""

from __future__ import annotations

from .warehouse_sql import Block

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
