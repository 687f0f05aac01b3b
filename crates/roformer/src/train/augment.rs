//! MSST's `augmentations:` config section, and the waveform augmentations of it that need no DSP.
//!
//! Supported, with the semantics of MSST's `utils/dataset.py` (dataset types 1-3):
//!
//! * `enable`: master switch; nothing below applies unless it is `true`.
//! * `loudness` with `loudness_min`/`loudness_max`: after every stem of a training example is
//!   drawn, each stem is scaled by its own gain, uniform in `[loudness_min, loudness_max)`.
//! * `mixup` with `mixup_probs`: for each probability `p` in the list, with chance `p` another
//!   chunk of the same instrument (random track and offset, its own augmentations) joins the stem;
//!   every chunk of the group is scaled by a uniform gain and the group is *averaged*. Quirk kept
//!   from MSST: those gains come from `loudness_min`/`loudness_max` (MSST's code never reads
//!   `mixup_loudness_min`/`mixup_loudness_max`, which its configs nevertheless carry), and they
//!   are drawn even when no extra chunk joined, so with `mixup: true` every stem gets a gain here
//!   and, with `loudness: true`, a second one afterwards.
//! * `all: {channel_shuffle, random_inverse, random_polarity}` and the same keys in a section
//!   named after an instrument (`vocals: {...}`), which override `all` for that instrument. Each
//!   value is a probability; `<= 0` disables. `channel_shuffle` reverses the channel order (swaps
//!   L/R of a stereo chunk), `random_inverse` reverses the chunk in *time*, `random_polarity`
//!   negates it. They are applied in that order to every chunk as it is read.
//!
//! MSST quirk not copied: it merges an instrument's section into the `all` dict *in place*, so
//! once a stem with its own section has been augmented, its overrides leak into every later stem
//! of that worker process. Here an instrument's section applies to that instrument only, which
//! is what the config format evidently means.
//!
//! Everything else (pitch shift, EQ, distortion, noise, time stretch, MP3, the `pedalboard_*`
//! effects, `mp3_compression_on_mixture`, `chunk_size_augm`) needs DSP this crate does not have.
//! Such keys are parsed without error and listed by [`AugmentationConfig::unsupported`] so that a
//! trainer can warn instead of silently training without them.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::weights::SplitMix64;

/// The per-stem augmentations of a section (`all`, or an instrument's): probabilities, `None`
/// where the section does not mention the key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StemAugmentations {
    pub channel_shuffle: Option<f64>,
    pub random_inverse: Option<f64>,
    pub random_polarity: Option<f64>,
}

impl StemAugmentations {
    /// `self` with the keys `other` sets replaced (MSST: instrument section over `all`).
    pub fn overridden_by(&self, other: &StemAugmentations) -> StemAugmentations {
        StemAugmentations {
            channel_shuffle: other.channel_shuffle.or(self.channel_shuffle),
            random_inverse: other.random_inverse.or(self.random_inverse),
            random_polarity: other.random_polarity.or(self.random_polarity),
        }
    }

    /// Applies the augmentations to a planar `[channel][len]` chunk, drawing one uniform number
    /// per enabled augmentation.
    pub fn apply(&self, chunk: &mut [f32], channels: usize, rng: &mut SplitMix64) {
        let len = chunk.len().checked_div(channels).unwrap_or(0);
        if fires(self.channel_shuffle, rng) {
            // MSST `source[::-1]`: the channel axis reversed.
            for c in 0..channels / 2 {
                let (head, tail) = chunk.split_at_mut((channels - 1 - c) * len);
                head[c * len..(c + 1) * len].swap_with_slice(&mut tail[..len]);
            }
        }
        if fires(self.random_inverse, rng) {
            // MSST `source[:, ::-1]`: time reversal, not a polarity flip despite the name.
            for plane in chunk.chunks_exact_mut(len.max(1)) {
                plane.reverse();
            }
        }
        if fires(self.random_polarity, rng) {
            for x in chunk.iter_mut() {
                *x = -*x;
            }
        }
    }
}

/// MSST: `if p > 0: if random.uniform(0, 1) < p: apply`.
fn fires(p: Option<f64>, rng: &mut SplitMix64) -> bool {
    match p {
        Some(p) if p > 0.0 => rng.next_f64() < p,
        _ => false,
    }
}

/// The `augmentations:` section of an MSST config. Absent, everything is off.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "BTreeMap<String, Yaml>")]
pub struct AugmentationConfig {
    /// `enable`: the master switch.
    pub enable: bool,
    /// `loudness`: per-stem gain in `[loudness_min, loudness_max)`.
    pub loudness: bool,
    pub loudness_min: f64,
    pub loudness_max: f64,
    /// `mixup`: average in more chunks of the same instrument, one per `mixup_probs` entry.
    pub mixup: bool,
    pub mixup_probs: Vec<f64>,
    /// Channel shuffle / time inversion / polarity for every instrument (`all`).
    pub all: StemAugmentations,
    /// Per-instrument sections, overriding `all`.
    pub stems: BTreeMap<String, StemAugmentations>,
    /// Keys this crate does not implement that would take effect, as `section.key = value`
    /// (see [`unsupported`](Self::unsupported)); parameters of such a key are not repeated.
    pub unrecognised: Vec<String>,
}

impl Default for AugmentationConfig {
    fn default() -> Self {
        Self {
            enable: false,
            loudness: false,
            loudness_min: 1.0,
            loudness_max: 1.0,
            mixup: false,
            mixup_probs: Vec::new(),
            all: StemAugmentations::default(),
            stems: BTreeMap::new(),
            unrecognised: Vec::new(),
        }
    }
}

impl AugmentationConfig {
    /// The augmentations of the config that would take effect in MSST but are not implemented
    /// here (empty when `enable` is off), e.g. `vocals.pitch_shift = 0.1`. A trainer should warn.
    pub fn unsupported(&self) -> Vec<String> {
        if self.enable {
            self.unrecognised.clone()
        } else {
            Vec::new()
        }
    }

    /// The channel shuffle / inversion / polarity settings for `instrument`: `all` with its own
    /// section on top; all off unless `enable`.
    pub fn for_instrument(&self, instrument: &str) -> StemAugmentations {
        if !self.enable {
            return StemAugmentations::default();
        }
        match self.stems.get(instrument) {
            Some(own) => self.all.overridden_by(own),
            None => self.all.clone(),
        }
    }

    /// Whether per-stem loudness gains apply.
    pub fn loudness_active(&self) -> bool {
        self.enable && self.loudness
    }

    /// Whether mixup applies.
    pub fn mixup_active(&self) -> bool {
        self.enable && self.mixup
    }

    /// A gain uniform in `[loudness_min, loudness_max)` (numpy `uniform`).
    pub fn draw_gain(&self, rng: &mut SplitMix64) -> f32 {
        (self.loudness_min + (self.loudness_max - self.loudness_min) * rng.next_f64()) as f32
    }
}

/// A YAML value of the section, as written (tags such as `!!python/tuple` dropped).
#[derive(Debug, Clone)]
pub enum Yaml {
    Bool(bool),
    Number(f64),
    String(String),
    List(Vec<Yaml>),
    Map(BTreeMap<String, Yaml>),
    Null(()),
}

// By hand rather than `#[serde(untagged)]`: serde-saphyr hands an untagged enum a tagged node
// (`mixup_probs: !!python/tuple [...]`) as a one-key map named after the tag, while a plain
// visitor gets the node itself.
impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> serde::de::Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Number(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null(()))
    }
    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null(()))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Yaml::List(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, Yaml>()? {
            entries.insert(key, value);
        }
        Ok(Yaml::Map(entries))
    }
}

impl Yaml {
    /// Python truthiness of a scalar (for the numbers and booleans MSST compares).
    fn truthy(&self) -> bool {
        match self {
            Yaml::Bool(b) => *b,
            Yaml::Number(x) => *x != 0.0,
            Yaml::String(s) => !s.is_empty(),
            Yaml::List(l) => !l.is_empty(),
            Yaml::Map(m) => !m.is_empty(),
            Yaml::Null(()) => false,
        }
    }

    /// Whether the key would switch something on in MSST (`p > 0` for a probability).
    fn enables(&self) -> bool {
        match self {
            Yaml::Number(x) => *x > 0.0,
            other => other.truthy(),
        }
    }

    fn number(&self, key: &str) -> Result<f64, String> {
        match self {
            Yaml::Number(x) => Ok(*x),
            Yaml::Bool(b) => Ok(f64::from(u8::from(*b))),
            other => Err(format!(
                "augmentations.{key} must be a number, got {}",
                other.describe()
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Yaml::Bool(b) => b.to_string(),
            Yaml::Number(x) => x.to_string(),
            Yaml::String(s) => format!("{s:?}"),
            Yaml::List(l) => format!(
                "[{}]",
                l.iter().map(Yaml::describe).collect::<Vec<_>>().join(", ")
            ),
            Yaml::Map(_) => "a mapping".into(),
            Yaml::Null(()) => "null".into(),
        }
    }
}

/// The key whose parameter `key` is, if `key` names a parameter rather than an augmentation:
/// `pitch_shift_min_semitones` belongs to `pitch_shift` when the section has that key.
fn parent_of<'a>(key: &str, section: &'a BTreeMap<String, Yaml>) -> Option<&'a str> {
    if key.starts_with("chunk_size_") && key != "chunk_size_augm" {
        // `chunk_size_min`/`chunk_size_max` parametrise `chunk_size_augm`.
        return section
            .get_key_value("chunk_size_augm")
            .map(|(k, _)| k.as_str());
    }
    section
        .keys()
        .filter(|p| p.len() < key.len() && key.starts_with(p.as_str()))
        .find(|p| key.as_bytes()[p.len()] == b'_')
        .map(String::as_str)
}

/// Adds to `out` the keys of `section` outside `known` that would take effect.
fn collect_unknown(
    prefix: &str,
    section: &BTreeMap<String, Yaml>,
    known: &[&str],
    out: &mut Vec<String>,
) {
    for (key, value) in section {
        if known.contains(&key.as_str()) || matches!(value, Yaml::Map(_)) {
            continue;
        }
        if parent_of(key, section).is_some() || !value.enables() {
            continue; // a parameter (reported with its augmentation), or switched off
        }
        out.push(format!("{prefix}{key} = {}", value.describe()));
    }
}

const STEM_KEYS: [&str; 3] = ["channel_shuffle", "random_inverse", "random_polarity"];
const TOP_KEYS: [&str; 8] = [
    "enable",
    "loudness",
    "loudness_min",
    "loudness_max",
    "mixup",
    "mixup_probs",
    // Read by no MSST code (mixup uses loudness_min/max): accepted and ignored, like MSST.
    "mixup_loudness_min",
    "mixup_loudness_max",
];

fn stem_section(
    name: &str,
    section: &BTreeMap<String, Yaml>,
    unrecognised: &mut Vec<String>,
) -> Result<StemAugmentations, String> {
    let get = |key: &str| -> Result<Option<f64>, String> {
        section
            .get(key)
            .map(|v| v.number(&format!("{name}.{key}")))
            .transpose()
    };
    let stem = StemAugmentations {
        channel_shuffle: get("channel_shuffle")?,
        random_inverse: get("random_inverse")?,
        random_polarity: get("random_polarity")?,
    };
    collect_unknown(&format!("{name}."), section, &STEM_KEYS, unrecognised);
    Ok(stem)
}

impl TryFrom<BTreeMap<String, Yaml>> for AugmentationConfig {
    type Error = String;

    fn try_from(map: BTreeMap<String, Yaml>) -> Result<Self, String> {
        let mut config = AugmentationConfig {
            // MSST: `config['augmentations'].enable is True`.
            enable: matches!(map.get("enable"), Some(Yaml::Bool(true))),
            loudness: map.get("loudness").is_some_and(Yaml::truthy),
            mixup: map.get("mixup").is_some_and(Yaml::truthy),
            ..Default::default()
        };
        let needs_range = config.enable && (config.loudness || config.mixup);
        match (map.get("loudness_min"), map.get("loudness_max")) {
            (Some(lo), Some(hi)) => {
                config.loudness_min = lo.number("loudness_min")?;
                config.loudness_max = hi.number("loudness_max")?;
            }
            _ if needs_range => {
                // MSST would stop with a KeyError at the first batch.
                return Err(
                    "augmentations: `loudness` and `mixup` need loudness_min and loudness_max"
                        .into(),
                );
            }
            _ => {}
        }
        if let Some(probs) = map.get("mixup_probs") {
            config.mixup_probs = match probs {
                Yaml::List(items) => items
                    .iter()
                    .map(|p| p.number("mixup_probs[]"))
                    .collect::<Result<_, _>>()?,
                Yaml::Null(()) => Vec::new(),
                other => vec![other.number("mixup_probs")?],
            };
        }
        for key in ["mixup_loudness_min", "mixup_loudness_max"] {
            if let Some(v) = map.get(key) {
                v.number(key)?;
            }
        }
        let mut unrecognised = Vec::new();
        collect_unknown("", &map, &TOP_KEYS, &mut unrecognised);
        for (name, value) in &map {
            if let Yaml::Map(section) = value {
                let stem = stem_section(name, section, &mut unrecognised)?;
                if name == "all" {
                    config.all = stem;
                } else {
                    config.stems.insert(name.clone(), stem);
                }
            }
        }
        config.unrecognised = unrecognised;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AugmentationConfig {
        serde_saphyr::from_str(text).unwrap()
    }

    /// An excerpt of MSST's `configs/config_musdb18_mdx23c.yaml` `augmentations:` section,
    /// shortened to one or two blocks of each kind.
    const MSST_EXCERPT: &str = r#"
enable: true # enable or disable all augmentations (to fast disable if needed)
loudness: true # randomly change loudness of each stem on the range (loudness_min; loudness_max)
loudness_min: 0.5
loudness_max: 1.5
mixup: true # mix several stems of same type with some probability (only works for dataset types: 1, 2, 3)
mixup_probs: !!python/tuple # 2 additional stems of the same type (1st with prob 0.2, 2nd with prob 0.02)
  - 0.2
  - 0.02
mixup_loudness_min: 0.5
mixup_loudness_max: 1.5

# apply mp3 compression to mixture only (emulate downloading mp3 from internet)
mp3_compression_on_mixture: 0.01
mp3_compression_on_mixture_bitrate_min: 32
mp3_compression_on_mixture_bitrate_max: 320
mp3_compression_on_mixture_backend: "lameenc"

all:
  channel_shuffle: 0.5 # Set 0 or lower to disable
  random_inverse: 0.1 # inverse track (better lower probability)
  random_polarity: 0.5 # polarity change (multiply waveform to -1)
  mp3_compression: 0.01
  mp3_compression_min_bitrate: 32
  mp3_compression_max_bitrate: 320
  mp3_compression_backend: "lameenc"

  # pedalboard reverb block
  pedalboard_reverb: 0.01
  pedalboard_reverb_room_size_min: 0.1
  pedalboard_reverb_room_size_max: 0.9

  # pedalboard distortion block
  pedalboard_distortion: 0
  pedalboard_distortion_drive_db_min: 1.0
  pedalboard_distortion_drive_db_max: 25.0

vocals:
  pitch_shift: 0.1
  pitch_shift_min_semitones: -5
  pitch_shift_max_semitones: 5
  seven_band_parametric_eq: 0.25
  seven_band_parametric_eq_min_gain_db: -9
  seven_band_parametric_eq_max_gain_db: 9
bass:
  random_polarity: 0.0
  tanh_distortion: 0.2
  tanh_distortion_min: 0.1
  tanh_distortion_max: 0.5
"#;

    #[test]
    fn parses_an_msst_section() {
        let a = parse(MSST_EXCERPT);
        assert!(a.enable && a.loudness && a.mixup);
        assert_eq!((a.loudness_min, a.loudness_max), (0.5, 1.5));
        assert_eq!(a.mixup_probs, vec![0.2, 0.02]);
        let all = StemAugmentations {
            channel_shuffle: Some(0.5),
            random_inverse: Some(0.1),
            random_polarity: Some(0.5),
        };
        assert_eq!(a.all, all);
        assert_eq!(a.for_instrument("drums"), all);
        assert_eq!(a.for_instrument("vocals"), all);
        // bass overrides random_polarity only.
        assert_eq!(
            a.for_instrument("bass"),
            StemAugmentations {
                random_polarity: Some(0.0),
                ..all.clone()
            }
        );
        // Only augmentations that would fire are listed, their parameters are not; the disabled
        // pedalboard_distortion is not listed.
        assert_eq!(
            a.unsupported(),
            vec![
                "mp3_compression_on_mixture = 0.01",
                "all.mp3_compression = 0.01",
                "all.pedalboard_reverb = 0.01",
                "bass.tanh_distortion = 0.2",
                "vocals.pitch_shift = 0.1",
                "vocals.seven_band_parametric_eq = 0.25",
            ]
        );
    }

    #[test]
    fn disabled_or_absent_sections_do_nothing() {
        let off = parse(&MSST_EXCERPT.replace("enable: true", "enable: false"));
        assert!(off.unsupported().is_empty());
        assert!(!off.loudness_active() && !off.mixup_active());
        assert_eq!(off.for_instrument("vocals"), StemAugmentations::default());
        let d = AugmentationConfig::default();
        assert!(!d.enable && d.unsupported().is_empty());
    }

    #[test]
    fn chunk_size_augmentation_is_reported_once() {
        let a = parse(
            "enable: true\nchunk_size_augm: true\nchunk_size_min: 44100\nchunk_size_max: 88200\n",
        );
        assert_eq!(a.unsupported(), vec!["chunk_size_augm = true"]);
    }

    #[test]
    fn loudness_needs_its_range() {
        let err = serde_saphyr::from_str::<AugmentationConfig>("enable: true\nloudness: true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("loudness_min"), "{err}");
        // Without `enable` MSST never reads it either.
        parse("enable: false\nloudness: true\n");
    }

    #[test]
    fn stem_augmentations_match_msst_array_ops() {
        let mut rng = SplitMix64::new(1);
        let always = |p| Some(p);
        // [L: 1 2 3, R: 4 5 6]
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let shuffle = StemAugmentations {
            channel_shuffle: always(1.0),
            ..Default::default()
        };
        shuffle.apply(&mut x, 2, &mut rng);
        assert_eq!(x, vec![4.0, 5.0, 6.0, 1.0, 2.0, 3.0]);
        let inverse = StemAugmentations {
            random_inverse: always(1.0),
            ..Default::default()
        };
        inverse.apply(&mut x, 2, &mut rng);
        assert_eq!(x, vec![6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
        let polarity = StemAugmentations {
            random_polarity: always(1.0),
            ..Default::default()
        };
        polarity.apply(&mut x, 2, &mut rng);
        assert_eq!(x, vec![-6.0, -5.0, -4.0, -3.0, -2.0, -1.0]);
        // Three channels: the outer two swap.
        let mut y = vec![1.0, 2.0, 3.0];
        shuffle.apply(&mut y, 3, &mut rng);
        assert_eq!(y, vec![3.0, 2.0, 1.0]);
        // p <= 0 never fires.
        let never = StemAugmentations {
            channel_shuffle: Some(0.0),
            random_inverse: Some(-1.0),
            random_polarity: None,
        };
        never.apply(&mut y, 3, &mut rng);
        assert_eq!(y, vec![3.0, 2.0, 1.0]);
    }
}
