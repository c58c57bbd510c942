//! The schema two ways: `migrations/` (what `wrangler d1 migrations apply` runs against D1) and
//! `schema.sql` (the whole current schema, which the other native tests load). Applying every
//! migration in order to an empty database must give exactly `schema.sql`, and rows written under
//! any earlier migration must survive every later one.
//!
//! Nothing here names a table or a column: tables, columns, constraints and indexes are read from
//! SQLite itself (`sqlite_master` and the `table_xinfo`, `foreign_key_list`, `index_list` and
//! `index_xinfo` pragmas), and migration files are read from the directory, so a new migration or
//! a new column is covered the day it is written.
//!
//! Migrations run the way wrangler runs them: wrangler's own `d1_migrations` table, each file
//! followed by the `INSERT` that records it, as one atomic batch (D1 rolls a failing migration
//! back), with foreign keys enforced as D1 enforces them.
#![cfg(not(target_arch = "wasm32"))]

use rusqlite::types::Value;
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

const SCHEMA: &str = include_str!("../schema.sql");
/// wrangler's default `migrations_table`, created with wrangler's own statement
/// (wrangler-dist `getCreateMigrationsTableQuery`).
const MIGRATIONS_TABLE: &str = "d1_migrations";
const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS \"d1_migrations\"(
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		name       TEXT UNIQUE,
		applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);";
/// Rows the generator writes into every table.
const ROWS: usize = 3;

// ---------------------------------------------------------------------------------------------
// Migration files, and applying them as wrangler does.
// ---------------------------------------------------------------------------------------------

struct Migration {
    /// The file name, which is what wrangler records in `d1_migrations`.
    name: String,
    sql: String,
}

/// The `migrations_dir` wrangler.toml names for the database, relative to the crate root.
fn migrations_dir() -> PathBuf {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/wrangler.toml"))
        .expect("wrangler.toml");
    let dir = toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("migrations_dir"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .next()
        .expect("wrangler.toml's [[d1_databases]] names its migrations_dir");
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir)
}

/// Every `*.sql` file of the migrations directory, in the order wrangler applies them (by name).
fn migrations() -> Vec<Migration> {
    let dir = migrations_dir();
    let mut out: Vec<Migration> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| Migration {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            sql: std::fs::read_to_string(&p).expect("migration file"),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!out.is_empty(), "no migrations in {}", dir.display());
    out
}

/// A fresh in-memory database with foreign keys enforced, as D1 has them.
fn empty_db() -> Connection {
    let conn = Connection::open_in_memory().expect("sqlite");
    conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
    conn
}

fn schema_db() -> Connection {
    let conn = empty_db();
    conn.execute_batch(SCHEMA).expect("schema.sql loads");
    conn
}

/// Apply one migration as `wrangler d1 migrations apply` does: its text, then the INSERT that
/// records it, in one batch that is rolled back whole if any statement fails.
fn apply(conn: &mut Connection, m: &Migration) -> Result<(), String> {
    conn.execute_batch(CREATE_MIGRATIONS_TABLE)
        .map_err(|e| e.to_string())?;
    let applied: i64 = conn
        .query_row(
            &format!("SELECT COUNT(*) FROM {MIGRATIONS_TABLE} WHERE name = ?1"),
            [&m.name],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    assert_eq!(applied, 0, "{} is applied already", m.name);
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    tx.execute_batch(&format!(
        "{}\nINSERT INTO {MIGRATIONS_TABLE} (name)\nvalues ('{}');",
        m.sql,
        m.name.replace('\'', "''")
    ))
    .map_err(|e| format!("{}: {e}", m.name))?;
    tx.commit().map_err(|e| e.to_string())
}

fn apply_all(conn: &mut Connection, ms: &[Migration]) {
    for m in ms {
        apply(conn, m).unwrap_or_else(|e| panic!("applying {}: {e}", m.name));
    }
}

fn applied_names(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(&format!("SELECT name FROM {MIGRATIONS_TABLE} ORDER BY id"))
        .expect("d1_migrations");
    stmt.query_map([], |r| r.get(0))
        .expect("names")
        .collect::<Result<_, _>>()
        .expect("names")
}

// ---------------------------------------------------------------------------------------------
// The shape of a database, read from SQLite, rendered as sorted lines that can be diffed.
// ---------------------------------------------------------------------------------------------

/// Objects that are not the application's: SQLite's own, wrangler's ledger, D1's internals.
fn is_internal(name: &str) -> bool {
    name.starts_with("sqlite_") || name.starts_with("_cf_") || name == MIGRATIONS_TABLE
}

/// SQL as SQLite would read it, whatever the layout: comments dropped, whitespace collapsed (and
/// none kept around `(`, `)` and `,`), identifier quotes removed, keywords and identifiers
/// lower-cased (SQLite compares both without case), string literals kept exactly, and the
/// `IF NOT EXISTS` that SQLite drops itself.
fn normalise_sql(sql: &str) -> String {
    const PUNCT: [char; 3] = ['(', ')', ','];
    let mut out = String::new();
    let mut chars = sql.chars().peekable();
    let mut space = false;
    // A pending space is written only between two words, never next to punctuation.
    let word = |out: &mut String, space: &mut bool| {
        if *space && !out.is_empty() && !out.ends_with(PUNCT) {
            out.push(' ');
        }
        *space = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                space = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                space = true;
            }
            '\'' => {
                word(&mut out, &mut space);
                out.push('\'');
                while let Some(n) = chars.next() {
                    out.push(n);
                    if n == '\'' {
                        if chars.peek() == Some(&'\'') {
                            out.push(chars.next().unwrap());
                        } else {
                            break;
                        }
                    }
                }
            }
            '"' | '`' | '[' => {
                word(&mut out, &mut space);
                let close = if c == '[' { ']' } else { c };
                while let Some(n) = chars.next() {
                    if n == close {
                        if close != ']' && chars.peek() == Some(&close) {
                            out.push(chars.next().unwrap());
                            continue;
                        }
                        break;
                    }
                    out.extend(n.to_lowercase());
                }
            }
            c if c.is_whitespace() => space = true,
            c if PUNCT.contains(&c) => {
                out.push(c);
                space = false;
            }
            c => {
                word(&mut out, &mut space);
                out.extend(c.to_lowercase());
            }
        }
    }
    out.replace(" if not exists ", " ")
}

fn rows_of(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn render(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => format!("{f:?}"),
        Value::Text(t) => format!("{t:?}"),
        Value::Blob(b) => format!(
            "x'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        other => render(other),
    }
}

/// The application's tables, by name.
fn tables(conn: &Connection) -> Vec<String> {
    rows_of(
        conn,
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
    )
    .into_iter()
    .map(|r| text(&r[0]))
    .filter(|n| !is_internal(n))
    .collect()
}

/// Everything the schema says, one fact per line: each object's normalised SQL, and for each table
/// its columns (name, declared type, NOT NULL, default, primary-key position, hidden) in order,
/// its foreign keys, and its indexes (explicit and the automatic ones behind PRIMARY KEY and
/// UNIQUE) with their key columns, order, collation, uniqueness and partiality.
fn shape(conn: &Connection) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for r in rows_of(
        conn,
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
    ) {
        let (kind, name, table) = (text(&r[0]), text(&r[1]), text(&r[2]));
        if is_internal(&name) || is_internal(&table) {
            continue;
        }
        if let Value::Text(sql) = &r[3] {
            lines.insert(format!("{kind} {name}: {}", normalise_sql(sql)));
        }
    }
    for t in tables(conn) {
        for c in rows_of(conn, &format!("PRAGMA table_xinfo(\"{t}\")")) {
            // cid, name, type, notnull, dflt_value, pk, hidden
            lines.insert(format!(
                "table {t} column #{:02} {}: type {:?} notnull {} default {} pk {} hidden {}",
                match c[0] {
                    Value::Integer(cid) => cid,
                    _ => -1,
                },
                text(&c[1]),
                text(&c[2]).to_lowercase(),
                render(&c[3]),
                render(&c[4]),
                render(&c[5]),
                render(&c[6])
            ));
        }
        for f in rows_of(conn, &format!("PRAGMA foreign_key_list(\"{t}\")")) {
            // id, seq, table, from, to, on_update, on_delete, match
            lines.insert(format!(
                "table {t} foreign key {}.{}: ({}) -> {}({}) on update {} on delete {} match {}",
                render(&f[0]),
                render(&f[1]),
                text(&f[3]),
                text(&f[2]),
                render(&f[4]),
                text(&f[5]),
                text(&f[6]),
                text(&f[7])
            ));
        }
        for i in rows_of(conn, &format!("PRAGMA index_list(\"{t}\")")) {
            // seq, name, unique, origin, partial. Automatic indexes are named by position
            // (sqlite_autoindex_<table>_<n>), so they are identified by what they cover instead.
            let name = text(&i[1]);
            let keys: Vec<String> = rows_of(conn, &format!("PRAGMA index_xinfo(\"{name}\")"))
                .iter()
                // seqno, cid, name, desc, coll, key
                .map(|k| {
                    let column = match &k[1] {
                        Value::Integer(-2) => "<expression>".to_owned(),
                        Value::Integer(-1) => "<rowid>".to_owned(),
                        _ => text(&k[2]),
                    };
                    let order = if matches!(k[3], Value::Integer(1)) {
                        " desc"
                    } else {
                        ""
                    };
                    let role = if matches!(k[5], Value::Integer(1)) {
                        "key"
                    } else {
                        "aux"
                    };
                    format!("{column}{order} {} {role}", text(&k[4]).to_lowercase())
                })
                .collect();
            let label = if name.starts_with("sqlite_autoindex_") {
                "<automatic>".to_owned()
            } else {
                name.clone()
            };
            lines.insert(format!(
                "table {t} index {label}: unique {} origin {} partial {} on [{}]",
                render(&i[2]),
                text(&i[3]),
                render(&i[4]),
                keys.join(", ")
            ));
        }
    }
    lines
}

/// Lines only in `a` and only in `b`, for a failure message a reader can act on.
fn diff(a: &BTreeSet<String>, a_name: &str, b: &BTreeSet<String>, b_name: &str) -> String {
    let mut out = String::new();
    for l in a.difference(b) {
        out.push_str(&format!("\n  only in {a_name}: {l}"));
    }
    for l in b.difference(a) {
        out.push_str(&format!("\n  only in {b_name}: {l}"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Rows for every table, generated from what the database says about itself.
// ---------------------------------------------------------------------------------------------

struct Column {
    name: String,
    decl: String,
    notnull: bool,
    pk: bool,
    hidden: bool,
}

fn columns(conn: &Connection, table: &str) -> Vec<Column> {
    rows_of(conn, &format!("PRAGMA table_xinfo(\"{table}\")"))
        .iter()
        .map(|c| Column {
            name: text(&c[1]),
            decl: text(&c[2]).to_uppercase(),
            notnull: matches!(c[3], Value::Integer(1)),
            pk: !matches!(c[5], Value::Integer(0)),
            // 1: hidden column of a virtual table; 2 and 3: generated columns. None is written.
            hidden: !matches!(c[6], Value::Integer(0)),
        })
        .collect()
}

/// Foreign keys of `table`: (id, child column, parent table, parent column or None for the PK).
fn foreign_keys(conn: &Connection, table: &str) -> Vec<(i64, String, String, Option<String>)> {
    rows_of(conn, &format!("PRAGMA foreign_key_list(\"{table}\")"))
        .iter()
        .map(|f| {
            let id = match f[0] {
                Value::Integer(i) => i,
                _ => 0,
            };
            let to = match &f[4] {
                Value::Null => None,
                v => Some(text(v)),
            };
            (id, text(&f[3]), text(&f[2]), to)
        })
        .collect()
}

/// The values a `CHECK (column IN ('a', 'b'))` allows, read from the table's SQL; empty if none.
fn allowed_values(table_sql: &str, column: &str) -> Vec<Value> {
    let sql = normalise_sql(table_sql);
    let needle = format!("check({column} in(");
    let Some(start) = sql.find(&needle).map(|i| i + needle.len()) else {
        return Vec::new();
    };
    let list = &sql[start..start + sql[start..].find(')').unwrap_or(0)];
    list.split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(
            |v| match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
                Some(s) => Value::Text(s.replace("''", "'")),
                None => v
                    .parse()
                    .map(Value::Integer)
                    .unwrap_or(Value::Text(v.into())),
            },
        )
        .collect()
}

/// Tables ordered so that every table comes after the tables its foreign keys point at.
fn parents_first(conn: &Connection) -> Vec<String> {
    let all = tables(conn);
    let mut done: Vec<String> = Vec::new();
    while done.len() < all.len() {
        let before = done.len();
        for t in &all {
            if done.contains(t) {
                continue;
            }
            let ready = foreign_keys(conn, t)
                .iter()
                .all(|(_, _, parent, _)| parent == t || done.contains(parent));
            if ready {
                done.push(t.clone());
            }
        }
        assert!(
            done.len() > before,
            "foreign keys form a cycle among {:?}; teach the generator to break it",
            all.iter().filter(|t| !done.contains(t)).collect::<Vec<_>>()
        );
    }
    done
}

/// Write `ROWS` rows into every table: NULL in every nullable column of the first row, generated
/// values elsewhere, parents' keys in foreign-key columns, allowed values where a CHECK lists them,
/// and values distinct per row so that every UNIQUE constraint holds. Returns the rows per table.
fn fill_every_table(conn: &Connection) -> BTreeMap<String, usize> {
    let mut written = BTreeMap::new();
    for t in parents_first(conn) {
        let table_sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [&t],
                |r| r.get(0),
            )
            .expect("table sql");
        let cols: Vec<Column> = columns(conn, &t)
            .into_iter()
            .filter(|c| !c.hidden)
            .collect();
        let fks = foreign_keys(conn, &t);
        for i in 0..ROWS {
            let mut values = Vec::new();
            for c in &cols {
                let fk = fks.iter().find(|(_, from, _, _)| *from == c.name);
                let v = if let Some((_, _, parent, to)) = fk {
                    if !c.notnull && !c.pk && i == 0 {
                        Value::Null
                    } else {
                        parent_key(conn, parent, to.as_deref(), i)
                    }
                } else if !c.notnull && !c.pk && i == 0 {
                    Value::Null
                } else if let allowed @ [_, ..] = allowed_values(&table_sql, &c.name).as_slice() {
                    allowed[i % allowed.len()].clone()
                } else if c.decl.contains("INT") {
                    Value::Integer(1_000 * (i as i64 + 1) + c.name.len() as i64)
                } else if c.decl.contains("REAL")
                    || c.decl.contains("FLOA")
                    || c.decl.contains("DOUB")
                {
                    Value::Real(i as f64 + 0.25)
                } else if c.decl.contains("BLOB") {
                    Value::Blob(vec![i as u8, 0xfe])
                } else {
                    // TEXT and anything else: a JSON object, which also satisfies a json_valid()
                    // check; distinct per table, column and row.
                    Value::Text(format!("{{\"row\":\"{t}.{}.{i}\"}}", c.name))
                };
                values.push(v);
            }
            let sql = format!(
                "INSERT INTO \"{t}\" ({}) VALUES ({})",
                cols.iter()
                    .map(|c| format!("\"{}\"", c.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                (1..=cols.len())
                    .map(|n| format!("?{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            conn.execute(&sql, rusqlite::params_from_iter(values.iter()))
                .unwrap_or_else(|e| {
                    panic!(
                        "could not write row {i} of {t} ({e}); values {:?}; teach fill_every_table \
                         about this constraint",
                        values.iter().map(render).collect::<Vec<_>>()
                    )
                });
        }
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM \"{t}\""), [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            n as usize, ROWS,
            "{t} holds other rows than the generated ones"
        );
        written.insert(t, ROWS);
    }
    written
}

/// The key of row `i` of `parent`: the referenced column, or the primary key when none is named.
fn parent_key(conn: &Connection, parent: &str, to: Option<&str>, i: usize) -> Value {
    let col = match to {
        Some(c) => c.to_owned(),
        None => columns(conn, parent)
            .into_iter()
            .find(|c| c.pk)
            .map(|c| c.name)
            .unwrap_or_else(|| "rowid".into()),
    };
    let rows = rows_of(
        conn,
        &format!("SELECT \"{col}\" FROM \"{parent}\" LIMIT 1 OFFSET {i}"),
    );
    rows.into_iter()
        .next()
        .map(|mut r| r.remove(0))
        .unwrap_or_else(|| panic!("{parent} has no row {i} to refer to"))
}

/// Every row of every table, each as column name -> value.
type Data = BTreeMap<String, Vec<BTreeMap<String, Value>>>;

fn data(conn: &Connection) -> Data {
    let mut out = Data::new();
    for t in tables(conn) {
        let names: Vec<String> = columns(conn, &t).into_iter().map(|c| c.name).collect();
        let rows = rows_of(conn, &format!("SELECT * FROM \"{t}\""));
        out.insert(
            t,
            rows.into_iter()
                .map(|r| names.iter().cloned().zip(r).collect())
                .collect(),
        );
    }
    out
}

/// Every row of `before` is in `after`, with the same value in every column it had; no table or
/// column that held data is gone. (Columns and tables added later may hold anything.)
fn assert_nothing_lost(before: &Data, after: &Data, context: &str) {
    for (t, rows) in before {
        let Some(now) = after.get(t) else {
            panic!("{context}: table {t} is gone with its {} rows", rows.len());
        };
        assert_eq!(
            now.len(),
            rows.len(),
            "{context}: table {t} had {} rows and has {}",
            rows.len(),
            now.len()
        );
        let mut unmatched: Vec<&BTreeMap<String, Value>> = now.iter().collect();
        for row in rows {
            for col in row.keys() {
                assert!(
                    now.iter().all(|r| r.contains_key(col)),
                    "{context}: column {t}.{col} is gone with its values"
                );
            }
            let found = unmatched
                .iter()
                .position(|r| row.iter().all(|(c, v)| r.get(c) == Some(v)))
                .unwrap_or_else(|| {
                    panic!(
                        "{context}: a row of {t} changed or went missing: {:?}",
                        row.iter()
                            .map(|(c, v)| format!("{c}={}", render(v)))
                            .collect::<Vec<_>>()
                    )
                });
            unmatched.remove(found);
        }
    }
}

fn assert_consistent(conn: &Connection, context: &str) {
    let fk = rows_of(conn, "PRAGMA foreign_key_check");
    assert!(fk.is_empty(), "{context}: foreign keys broken: {fk:?}");
    let ok = rows_of(conn, "PRAGMA integrity_check");
    assert_eq!(text(&ok[0][0]), "ok", "{context}: integrity check: {ok:?}");
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn migration_files_are_numbered_the_way_wrangler_numbers_them() {
    let ms = migrations();
    for (i, m) in ms.iter().enumerate() {
        let (number, rest) = m.name.split_at(4.min(m.name.len()));
        assert!(
            number.chars().all(|c| c.is_ascii_digit()) && number.len() == 4,
            "{}: wrangler d1 migrations names files NNNN_name.sql",
            m.name
        );
        assert_eq!(
            number.parse::<usize>().unwrap(),
            i + 1,
            "{}: migrations are numbered 0001, 0002, ... without gaps or repeats",
            m.name
        );
        let stem = rest
            .strip_prefix('_')
            .and_then(|r| r.strip_suffix(".sql"))
            .unwrap_or("");
        assert!(
            !stem.is_empty()
                && stem
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{}: the name after the number is lower-case words joined by _",
            m.name
        );
        assert!(
            m.sql.starts_with(&format!("-- Migration number: {number}")),
            "{}: starts with the header `wrangler d1 migrations create` writes",
            m.name
        );
    }
}

#[test]
fn applying_every_migration_in_order_gives_exactly_schema_sql() {
    let started = Instant::now();
    let ms = migrations();
    let mut migrated = empty_db();
    apply_all(&mut migrated, &ms);
    assert_eq!(
        applied_names(&migrated),
        ms.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        "d1_migrations records every migration, in order"
    );
    let want = shape(&schema_db());
    let got = shape(&migrated);
    assert!(
        want.iter().any(|l| l.contains(" column ")) && want.len() > 50,
        "the comparison sees the schema: {want:?}"
    );
    assert!(
        want == got,
        "applying migrations/ in order does not give schema.sql; add a migration for the change \
         (a column added with ALTER TABLE goes last among its table's columns in schema.sql too):{}",
        diff(&want, "schema.sql", &got, "migrations")
    );
    eprintln!(
        "{} migrations applied, {} schema facts compared, in {:?}",
        ms.len(),
        want.len(),
        started.elapsed()
    );
}

#[test]
fn rows_in_every_table_survive_every_later_migration() {
    let started = Instant::now();
    let ms = migrations();
    let mut checked = 0;
    // From each migration but the last: rows written under it must outlive all that follow, so a
    // table added by 0003 is filled and carried through 0004 and later too.
    for start in 1..ms.len() {
        let mut conn = empty_db();
        apply_all(&mut conn, &ms[..start]);
        let written = fill_every_table(&conn);
        assert!(
            !written.is_empty(),
            "no tables after {}",
            ms[start - 1].name
        );
        let before = data(&conn);
        apply_all(&mut conn, &ms[start..]);
        let context = format!(
            "rows written after {}, then {} applied",
            ms[start - 1].name,
            ms[start..]
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_nothing_lost(&before, &data(&conn), &context);
        assert_consistent(&conn, &context);
        checked += written.len();
        eprintln!(
            "{context}: {} tables x {ROWS} rows, nothing lost",
            written.len()
        );
    }
    eprintln!("{checked} tables checked in {:?}", started.elapsed());
}

/// A database made by `wrangler d1 execute --file schema.sql` before migrations existed has the
/// tables but no `d1_migrations`. 0001 is that schema.sql written with IF NOT EXISTS, so applying
/// the migrations takes 0001 as a no-op, records it, and goes on.
#[test]
fn a_database_created_from_schema_sql_before_migrations_is_upgraded_in_place() {
    let ms = migrations();
    let mut conn = empty_db();
    let initial = ms[0].sql.clone();
    conn.execute_batch(&initial)
        .expect("the old schema.sql loads");
    fill_every_table(&conn);
    let before = data(&conn);
    apply_all(&mut conn, &ms);
    assert_eq!(applied_names(&conn).len(), ms.len());
    assert_nothing_lost(&before, &data(&conn), "upgrading a pre-migrations database");
    assert_consistent(&conn, "upgrading a pre-migrations database");
    let want = shape(&schema_db());
    let got = shape(&conn);
    assert!(
        want == got,
        "an upgraded pre-migrations database differs from schema.sql:{}",
        diff(&want, "schema.sql", &got, "upgraded")
    );
}

// The case-insensitive usernames migration.

/// The database just before the case-folding migration, with two users differing only in case,
/// each with a key, in one tenant, and a third user who collides with nobody.
fn before_folding(ms: &[Migration]) -> (Connection, usize) {
    let fold = ms
        .iter()
        .position(|m| m.name.contains("usernames_case_insensitive"))
        .expect("the case-folding migration");
    let mut conn = empty_db();
    apply_all(&mut conn, &ms[..fold]);
    conn.execute_batch(
        "INSERT INTO tenants (id, name, create_date) VALUES ('t1', 'acme', 1);
         INSERT INTO users (username, tenant_id, role, status, create_date, update_date) VALUES
           ('Alice@Example.com', 't1', 'owner', 'active', 1, 1),
           ('alice@example.com', 't1', 'member', 'active', 2, 2),
           ('bob@example.com', 't1', 'member', 'active', 3, 3);
         INSERT INTO api_keys (id, access_key, secret_hash, secret_hint, username, tenant_id,
                               create_date, update_date) VALUES
           ('k1', 'kwa_1', 'h1', 'x', 'Alice@Example.com', 't1', 1, 1),
           ('k2', 'kwa_2', 'h2', 'y', 'alice@example.com', 't1', 2, 2);",
    )
    .expect("rows before the migration");
    (conn, fold)
}

#[test]
fn the_case_folding_migration_stops_on_usernames_differing_only_in_case_and_changes_nothing() {
    let ms = migrations();
    let (mut conn, fold) = before_folding(&ms);
    let shape_before = shape(&conn);
    let data_before = data(&conn);
    let ledger_before = applied_names(&conn);

    let err = apply(&mut conn, &ms[fold]).expect_err("two spellings of one username");
    assert!(
        err.contains("two usernames differ only in letter case"),
        "the error says why: {err}"
    );
    assert_eq!(shape(&conn), shape_before, "no index, no leftover table");
    assert_eq!(data(&conn), data_before, "no row changed");
    assert_eq!(
        applied_names(&conn),
        ledger_before,
        "not recorded as applied"
    );
}

#[test]
fn the_case_folding_migration_applies_once_the_collision_is_resolved_and_then_refuses_new_ones() {
    let ms = migrations();
    let (mut conn, fold) = before_folding(&ms);
    // What the README says to do: remove one of the pair (here the later one, with its key).
    conn.execute_batch(
        "DELETE FROM api_keys WHERE username = 'alice@example.com';
         DELETE FROM users WHERE username = 'alice@example.com';",
    )
    .unwrap();
    let kept = data(&conn);
    apply_all(&mut conn, &ms[fold..]);
    assert_nothing_lost(&kept, &data(&conn), "after resolving the collision");
    let stored: String = conn
        .query_row(
            "SELECT username FROM users WHERE lower(username) = lower('ALICE@example.COM')",
            [],
            |r| r.get(0),
        )
        .expect("found by any spelling");
    assert_eq!(stored, "Alice@Example.com", "the given spelling is kept");
    let again = conn.execute(
        "INSERT INTO users (username, tenant_id, role, status, create_date, update_date) \
         VALUES ('ALICE@EXAMPLE.COM', 't1', 'member', 'active', 4, 4)",
        [],
    );
    let msg = again.expect_err("a second spelling is refused").to_string();
    assert!(msg.contains("UNIQUE constraint failed"), "{msg}");
}

#[test]
fn audit_entries_older_than_the_actor_kind_are_sorted_by_what_only_one_kind_of_actor_can_do() {
    let all = migrations();
    let at = all
        .iter()
        .position(|m| m.name.starts_with("0004_"))
        .expect("0004 exists");
    let mut conn = empty_db();
    apply_all(&mut conn, &all[..at]);
    for (actor, action) in [
        ("admin", "tenant.create"),
        ("admin", "user.update"),
        ("admin", "settings.update"),
        ("admin", "api_key.create"),
        ("admin", "model.add"),
        ("alice@example.com", "api_key.rotate"),
        ("alice@example.com", "defaults.set"),
    ] {
        conn.execute(
            "INSERT INTO audit (at, actor, action, target) VALUES (1, ?1, ?2, 'x')",
            [actor, action],
        )
        .unwrap();
    }
    apply_all(&mut conn, &all[at..]);
    let kinds: Vec<String> = rows_of(&conn, "SELECT actor_kind FROM audit ORDER BY id")
        .iter()
        .map(|r| text(&r[0]))
        .collect();
    assert_eq!(
        kinds,
        ["admin", "admin", "admin", "unknown", "user", "user", "user"],
        "an `admin` on a key action could be either: unknown"
    );
}
