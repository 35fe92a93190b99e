//! Problem paths (`rules[3].services[0]`), formatted only when a problem is
//! reported.

use std::fmt::{self, Display};

/// A problem path below `parent`, written out only when a problem is reported
/// (validating 100k rules must not format a million paths that are never shown).
pub(crate) struct Sub<'a> {
    parent: &'a dyn Display,
    part: Part,
}

enum Part {
    Field(&'static str),
    Index(usize),
}

impl<'a> Sub<'a> {
    pub(crate) fn field(parent: &'a dyn Display, name: &'static str) -> Self {
        Sub {
            parent,
            part: Part::Field(name),
        }
    }

    pub(crate) fn index(parent: &'a dyn Display, i: usize) -> Self {
        Sub {
            parent,
            part: Part::Index(i),
        }
    }
}

impl Display for Sub<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.part {
            Part::Field(name) => write!(f, "{}.{name}", self.parent),
            Part::Index(i) => write!(f, "{}[{i}]", self.parent),
        }
    }
}
