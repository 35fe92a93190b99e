//! Tables for people: columns padded to their widest cell.

use serde_json::Value;

/// A cell's text: strings bare, null as `-`, lists joined by `,`, maps as `k=v`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            if a.is_empty() {
                "-".into()
            } else {
                a.iter().map(cell).collect::<Vec<_>>().join(",")
            }
        }
        Value::Object(m) => {
            if m.is_empty() {
                "-".into()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", cell(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        }
        other => other.to_string(),
    }
}

/// Prints `rows` (objects) as a table of `columns`: (header, JSON pointer).
pub fn table(rows: &Value, columns: &[(&str, &str)]) {
    let empty = Vec::new();
    let rows = rows.as_array().unwrap_or(&empty);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(_, ptr)| cell(r.pointer(ptr).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let mut out = String::new();
        for (i, v) in vals.iter().enumerate() {
            if i + 1 == vals.len() {
                out.push_str(v);
            } else {
                let pad = widths[i].saturating_sub(v.chars().count());
                out.push_str(v);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(columns.iter().map(|(h, _)| h.to_string()).collect());
    for r in cells {
        line(r);
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// Prints one object as `key: value` lines.
pub fn fields(v: &Value) {
    if let Some(m) = v.as_object() {
        let w = m.keys().map(String::len).max().unwrap_or(0);
        for (k, val) in m {
            println!("{k:<w$}  {}", cell(val));
        }
    } else {
        println!("{}", cell(v));
    }
}
