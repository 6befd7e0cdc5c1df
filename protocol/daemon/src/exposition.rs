//! The Prometheus text exposition format (0.0.4): the lines both daemons write for their own
//! metrics.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use crate::AtomicU64;

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A series without labels: its `# HELP`, `# TYPE` and value lines.
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Milliseconds as seconds with three decimals (`1712.005`), without float formatting.
pub fn millis_as_seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The values of one label of a counter family: a fieldless enum defined by [`label_values!`].
pub trait LabelValue: Copy + 'static {
    /// Every value, in exposition order.
    const ALL: &'static [Self];
    /// The label value written.
    fn label(self) -> &'static str;
    /// The position of this value in `ALL`.
    fn index(self) -> usize;
}

/// Defines a fieldless enum whose values are the values of one label (`Variant => "label"`),
/// with `label()` and [`LabelValue`], so that the variants are listed once.
#[macro_export]
macro_rules! label_values {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The label value.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }
        }

        impl $crate::exposition::LabelValue for $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];
            fn label(self) -> &'static str {
                $name::label(self)
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// A counter family with one label: a counter for each value of `V`, every one written (0 too).
#[derive(Debug)]
pub struct Counters<V: LabelValue> {
    counts: Vec<AtomicU64>,
    values: PhantomData<V>,
}

impl<V: LabelValue> Default for Counters<V> {
    fn default() -> Self {
        Counters {
            counts: V::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            values: PhantomData,
        }
    }
}

impl<V: LabelValue> Counters<V> {
    /// Counts one more `value`.
    pub fn add(&self, value: V) {
        if let Some(n) = self.counts.get(value.index()) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count of `value`.
    pub fn get(&self, value: V) -> u64 {
        self.counts
            .get(value.index())
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// The family: its `# HELP` and `# TYPE` lines, then `name{label="value"} count` for each
    /// value.
    pub fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        header(out, name, "counter", help);
        for value in V::ALL {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{}\"}} {}",
                value.label(),
                self.get(*value)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_series_lines() {
        let mut out = String::new();
        single(&mut out, "a_total", "counter", "As.", 3);
        single(&mut out, "b", "gauge", "Bs.", millis_as_seconds(1_005));
        assert_eq!(
            out,
            "# HELP a_total As.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Bs.\n# TYPE b gauge\nb 1.005\n"
        );
    }

    crate::label_values! {
        /// A test family.
        pub enum Colour {
            /// The first.
            Red => "red",
            Green => "green",
        }
    }

    #[test]
    fn counters_write_every_value_in_order() {
        let c = Counters::<Colour>::default();
        c.add(Colour::Green);
        c.add(Colour::Green);
        assert_eq!(Colour::Red.label(), "red");
        let mut out = String::new();
        c.render(&mut out, "c_total", "colour", "Cs.");
        assert_eq!(
            out,
            "# HELP c_total Cs.\n# TYPE c_total counter\n\
             c_total{colour=\"red\"} 0\nc_total{colour=\"green\"} 2\n"
        );
    }
}
