//! Merging schemas of several files (and of several records) into one.

use std::collections::{HashMap, HashSet};

use super::scalar::MAX_DECIMAL_PRECISION;
use crate::model::{DataType, Field, Schema};

/// The union of several files' schemas, with what differed between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedSchema {
    /// Union of columns in first-seen order, with widened types.
    pub schema: Schema,
    /// Columns that are missing from some files or whose type differs between files.
    pub drift: Vec<ColumnDrift>,
}

/// How one top-level column differs between files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDrift {
    /// Column name.
    pub column: String,
    /// Labels of the files that have the column.
    pub present_in: Vec<String>,
    /// Labels of the files that lack it.
    pub missing_from: Vec<String>,
    /// Distinct canonical types seen, in first-seen order (more than one = type conflict).
    pub types: Vec<String>,
}

/// Merges per-file schemas `(file label, schema)` in order: union of columns (first-seen order),
/// widened types (see [`widen`]); columns missing from some files become nullable. Columns
/// that are missing somewhere or change type are reported as drift.
pub fn merge_schemas(files: &[(String, Schema)]) -> MergedSchema {
    let mut fields: Vec<Field> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // Per merged column: which files have it (by position) and the distinct types seen.
    let mut present: Vec<Vec<bool>> = Vec::new();
    let mut types: Vec<Vec<String>> = Vec::new();
    for (file, (_, schema)) in files.iter().enumerate() {
        for field in &schema.fields {
            let ty = field.data_type.to_string();
            let i = match index.get(&field.name) {
                Some(&i) => {
                    if let Some(merged) = fields.get_mut(i) {
                        merged.data_type = widen(&merged.data_type, &field.data_type);
                        merged.nullable |= field.nullable;
                    }
                    i
                }
                None => {
                    index.insert(field.name.clone(), fields.len());
                    fields.push(field.clone());
                    present.push(vec![false; files.len()]);
                    types.push(Vec::new());
                    fields.len() - 1
                }
            };
            if let Some(seen) = present.get_mut(i).and_then(|p| p.get_mut(file)) {
                *seen = true;
            }
            if let Some(t) = types.get_mut(i)
                && !t.contains(&ty)
            {
                t.push(ty);
            }
        }
    }
    let mut drift = Vec::new();
    for ((field, present), types) in fields.iter_mut().zip(present).zip(types) {
        let (mut present_in, mut missing_from) = (Vec::new(), Vec::new());
        for ((label, _), here) in files.iter().zip(present) {
            if here { &mut present_in } else { &mut missing_from }.push(label.clone());
        }
        if !missing_from.is_empty() {
            field.nullable = true;
        }
        if !missing_from.is_empty() || types.len() > 1 {
            drift.push(ColumnDrift { column: field.name.clone(), present_in, missing_from, types });
        }
    }
    MergedSchema { schema: Schema { fields }, drift }
}

/// Merges two struct field lists: union in first-seen order, widened types, and fields
/// missing on one side become nullable.
pub(crate) fn merge_fields(a: &[Field], b: &[Field]) -> Vec<Field> {
    // Records can have very many keys: index instead of scanning.
    let b_index: HashMap<&str, &Field> = b.iter().map(|f| (f.name.as_str(), f)).collect();
    let a_names: HashSet<&str> = a.iter().map(|f| f.name.as_str()).collect();
    let mut out: Vec<Field> = a
        .iter()
        .map(|fa| match b_index.get(fa.name.as_str()) {
            Some(fb) => merge_field(fa, fb),
            None => Field { nullable: true, ..fa.clone() },
        })
        .collect();
    for fb in b {
        if !a_names.contains(fb.name.as_str()) {
            out.push(Field { nullable: true, ..fb.clone() });
        }
    }
    out
}

fn merge_field(a: &Field, b: &Field) -> Field {
    Field {
        name: a.name.clone(),
        data_type: widen(&a.data_type, &b.data_type),
        nullable: a.nullable || b.nullable,
    }
}

/// Digits before the point an integer type needs.
fn integer_digits(ty: &DataType) -> Option<u32> {
    match ty {
        DataType::Int32 => Some(10),
        DataType::Int64 => Some(19),
        _ => None,
    }
}

/// The narrowest type holding values of both `a` and `b`:
/// int32 < int64 < double (float < double), decimals widen to cover both integer and
/// fractional digits (beyond 38 digits: double), integers widen into decimals, date <
/// timestamp < timestamp_tz, structs merge field by field, lists and maps widen their
/// elements, `null` yields to anything, and everything else becomes string.
pub fn widen(a: &DataType, b: &DataType) -> DataType {
    use DataType as T;
    match (a, b) {
        (x, y) if x == y => x.clone(),
        (T::Null, x) | (x, T::Null) => x.clone(),
        (T::Int32, T::Int64) | (T::Int64, T::Int32) => T::Int64,
        (T::Int32 | T::Int64 | T::Float | T::Double, T::Float | T::Double)
        | (T::Float | T::Double, T::Int32 | T::Int64) => T::Double,
        (T::Decimal { precision: p1, scale: s1 }, T::Decimal { precision: p2, scale: s2 }) => {
            decimal(p1.saturating_sub(*s1).max(p2.saturating_sub(*s2)), *s1.max(s2))
        }
        (T::Decimal { precision, scale }, int) | (int, T::Decimal { precision, scale })
            if integer_digits(int).is_some() =>
        {
            let digits = integer_digits(int).unwrap_or(19);
            decimal(precision.saturating_sub(*scale).max(digits), *scale)
        }
        (T::Decimal { .. }, T::Float | T::Double) | (T::Float | T::Double, T::Decimal { .. }) => T::Double,
        (T::Date, T::Timestamp { with_time_zone }) | (T::Timestamp { with_time_zone }, T::Date) => {
            T::Timestamp { with_time_zone: *with_time_zone }
        }
        (T::Timestamp { .. }, T::Timestamp { .. }) => T::Timestamp { with_time_zone: true },
        (T::Struct(fa), T::Struct(fb)) => T::Struct(merge_fields(fa, fb)),
        (T::List(ea), T::List(eb)) => T::List(Box::new(merge_field(ea, eb))),
        (T::Map { key: ka, value: va }, T::Map { key: kb, value: vb }) => {
            T::Map { key: Box::new(merge_field(ka, kb)), value: Box::new(merge_field(va, vb)) }
        }
        _ => T::String,
    }
}

fn decimal(int_digits: u32, scale: u32) -> DataType {
    let precision = int_digits.saturating_add(scale);
    if precision > MAX_DECIMAL_PRECISION {
        DataType::Double
    } else {
        DataType::Decimal { precision: precision.max(1), scale }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, data_type: DataType, nullable: bool) -> Field {
        Field { name: name.into(), data_type, nullable }
    }

    #[test]
    fn widening_table() {
        use DataType as T;
        let dec = |precision, scale| T::Decimal { precision, scale };
        let ts = |tz| T::Timestamp { with_time_zone: tz };
        let table: Vec<(T, T, &str)> = vec![
            (T::Int32, T::Int64, "int64"),
            (T::Int64, T::Double, "double"),
            (T::Float, T::Double, "double"),
            (T::Int32, T::Float, "double"),
            (dec(10, 2), dec(12, 4), "decimal(12,4)"),
            (dec(10, 2), dec(8, 5), "decimal(13,5)"),
            (dec(5, 2), T::Int32, "decimal(12,2)"),
            (dec(30, 10), T::Int64, "decimal(30,10)"),
            (dec(5, 2), T::Int64, "decimal(21,2)"),
            (dec(38, 10), dec(38, 20), "double"),
            (dec(5, 2), T::Double, "double"),
            (T::Date, ts(false), "timestamp"),
            (T::Date, ts(true), "timestamp_tz"),
            (ts(false), ts(true), "timestamp_tz"),
            (T::Null, T::Boolean, "boolean"),
            (T::Boolean, T::Int64, "string"),
            (T::Int64, T::String, "string"),
            (T::Binary, T::String, "string"),
            (
                T::Struct(vec![f("a", T::Int32, false)]),
                T::Struct(vec![f("a", T::Int64, false), f("b", T::String, false)]),
                "struct<a:int64,b:string>",
            ),
            (
                T::List(Box::new(f("element", T::Int64, false))),
                T::List(Box::new(f("element", T::Double, true))),
                "list<double>",
            ),
            (
                T::Map {
                    key: Box::new(f("key", T::String, false)),
                    value: Box::new(f("value", T::Int32, true)),
                },
                T::Map {
                    key: Box::new(f("key", T::String, false)),
                    value: Box::new(f("value", T::Int64, true)),
                },
                "map<string,int64>",
            ),
        ];
        for (a, b, expected) in table {
            assert_eq!(widen(&a, &b).to_string(), expected, "{a} + {b}");
            assert_eq!(widen(&b, &a).to_string(), expected, "{b} + {a}");
        }
    }

    #[test]
    fn drift_and_nullability() {
        let s1 = Schema {
            fields: vec![
                f("id", DataType::Int32, false),
                f("name", DataType::String, false),
                f("s", DataType::Struct(vec![f("x", DataType::Int32, false)]), false),
            ],
        };
        let s2 = Schema {
            fields: vec![
                f("id", DataType::Int64, false),
                f("s", DataType::Struct(vec![f("y", DataType::String, false)]), false),
                f("extra", DataType::Boolean, false),
            ],
        };
        let merged = merge_schemas(&[("a".into(), s1), ("b".into(), s2)]);
        let rendered: Vec<String> = merged
            .schema
            .fields
            .iter()
            .map(|f| format!("{}:{}:{}", f.name, f.data_type, f.nullable))
            .collect();
        assert_eq!(
            rendered,
            ["id:int64:false", "name:string:true", "s:struct<x:int32,y:string>:false", "extra:boolean:true"]
        );
        let DataType::Struct(inner) = &merged.schema.fields[2].data_type else { panic!() };
        assert!(inner.iter().all(|f| f.nullable));
        assert_eq!(
            merged.drift,
            vec![
                ColumnDrift {
                    column: "id".into(),
                    present_in: vec!["a".into(), "b".into()],
                    missing_from: vec![],
                    types: vec!["int32".into(), "int64".into()],
                },
                ColumnDrift {
                    column: "name".into(),
                    present_in: vec!["a".into()],
                    missing_from: vec!["b".into()],
                    types: vec!["string".into()],
                },
                ColumnDrift {
                    column: "s".into(),
                    present_in: vec!["a".into(), "b".into()],
                    missing_from: vec![],
                    types: vec!["struct<x:int32>".into(), "struct<y:string>".into()],
                },
                ColumnDrift {
                    column: "extra".into(),
                    present_in: vec!["b".into()],
                    missing_from: vec!["a".into()],
                    types: vec!["boolean".into()],
                },
            ]
        );
        assert_eq!(merge_schemas(&[]).schema.fields.len(), 0);
    }
}
