//! The result of a separation: named stems.

use crate::audio::Audio;

/// Separated stems, in the order of [`Separator::stems`](crate::Separator::stems), each at the
/// model's sample rate and channel count.
#[derive(Debug, Clone, PartialEq)]
pub struct Stems {
    stems: Vec<(String, Audio)>,
}

impl Stems {
    pub(crate) fn new(stems: Vec<(String, Audio)>) -> Self {
        Self { stems }
    }

    /// The stems' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stems.iter().map(|(n, _)| n.as_str())
    }

    /// The stem called `name`.
    pub fn get(&self, name: &str) -> Option<&Audio> {
        self.stems.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// `(name, audio)` of every stem, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Audio)> {
        self.stems.iter().map(|(n, a)| (n.as_str(), a))
    }

    /// Number of stems.
    pub fn len(&self) -> usize {
        self.stems.len()
    }

    /// Whether there are no stems (never, for a finished separation).
    pub fn is_empty(&self) -> bool {
        self.stems.is_empty()
    }
}

impl IntoIterator for Stems {
    type Item = (String, Audio);
    type IntoIter = std::vec::IntoIter<(String, Audio)>;
    fn into_iter(self) -> Self::IntoIter {
        self.stems.into_iter()
    }
}
