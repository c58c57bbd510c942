//! Aligned text tables for people (scripts use `--json`). Cells are cleaned of control
//! characters, so a hostile name cannot move the cursor or rewrite the terminal.

/// `s` with every control character (ESC, CR, BEL, ...) shown as `\u{..}` instead of sent.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Free text (a chat reply) with its line breaks and tabs kept, every other control character
/// shown as `\u{..}`.
pub fn clean_text(s: &str) -> String {
    s.split('\n')
        .map(|line| line.split('\t').map(clean).collect::<Vec<_>>().join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table: a header row and rows of cells, printed with columns padded to their widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, the last column unpadded.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let width = |i: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..n).map(width).collect();
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = r.get(i).map_or("", String::as_str);
                if i + 1 == n {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(w - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// A record as `field  value` lines.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let mut t = Table {
        header: vec!["FIELD".into(), "VALUE".into()],
        rows: Vec::new(),
    };
    for (k, v) in pairs {
        t.row(vec![k.to_string(), v.clone()]);
    }
    // Without the header row: a record reads better as plain pairs.
    t.render()
        .split_once('\n')
        .map_or(String::new(), |(_, rest)| rest.to_owned())
}

/// An optional value as a cell: `-` for none.
pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_owned(), T::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_their_widest_cell() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "alice".into()]);
        t.row(vec!["1234".into(), "b".into()]);
        assert_eq!(t.render(), "ID    NAME\n1     alice\n1234  b\n");
    }

    #[test]
    fn control_characters_in_cells_are_shown_not_sent() {
        let mut t = Table::new(&["NAME"]);
        t.row(vec!["evil\x1b[2J\r\nname\u{7}".into()]);
        let out = t.render();
        assert!(
            !out.contains('\x1b') && !out.contains('\r') && !out.contains('\u{7}'),
            "{out:?}"
        );
        assert_eq!(out, "NAME\nevil\\u{1b}[2J\\u{d}\\u{a}name\\u{7}\n");
    }

    #[test]
    fn free_text_keeps_its_lines_and_tabs_but_not_escapes() {
        assert_eq!(clean_text("a\n\tb\x1b[31m"), "a\n\tb\\u{1b}[31m");
    }

    #[test]
    fn a_record_is_aligned_pairs() {
        assert_eq!(
            fields(&[("id", "k1".into()), ("expires_at", "-".into())]),
            "id          k1\nexpires_at  -\n"
        );
    }
}
