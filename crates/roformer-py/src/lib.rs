//! The `roformer._roformer` extension: a thin PyO3 layer over [`roformer::Separator`]. Shapes,
//! dtypes and keyword defaults are checked in `python/roformer/__init__.py`; this layer turns
//! arrays into [`Audio`] and back, releases the GIL around the separation, and turns the
//! library's errors into `RoformerError` with the text the CLI prints.

use std::path::{Path, PathBuf};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use roformer::audio::{FlacDepth, OutputFormat, PcmFormat};
use roformer::error::full_message;
use roformer::{Audio, FileOptions, FileOutcome, Hooks, Precision, Separator};

// Named `roformer.RoformerError`, where the package exports it.
create_exception!(
    roformer,
    RoformerError,
    PyException,
    "A model, config, audio file or option that roformer cannot use; the message names it."
);

fn py_err(e: roformer::Error) -> PyErr {
    RoformerError::new_err(full_message(&e))
}

fn output_format(format: &str, pcm: &str) -> PyResult<OutputFormat> {
    Ok(match (format, pcm) {
        ("wav", "16") => OutputFormat::Wav(PcmFormat::Int16),
        ("wav", "24") => OutputFormat::Wav(PcmFormat::Int24),
        ("wav", "f32") => OutputFormat::Wav(PcmFormat::Float32),
        ("flac", "16") => OutputFormat::Flac(FlacDepth::Int16),
        ("flac", "24") => OutputFormat::Flac(FlacDepth::Int24),
        ("flac", "f32") => {
            return Err(PyValueError::new_err(
                "FLAC stores integers: use pcm=16 or pcm=24",
            ))
        }
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown output format {format:?} with pcm {pcm:?} \
                 (format: wav or flac; pcm: 16, 24 or f32)"
            )))
        }
    })
}

/// A loaded model, ready to separate (see `roformer.Separator`).
#[pyclass(name = "_Separator", module = "roformer._roformer", frozen)]
struct PySeparator {
    inner: Separator,
}

#[pymethods]
impl PySeparator {
    #[new]
    #[pyo3(signature = (model, config, device, precision, tta, overlap, chunk_size, batch_size, instrumental))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: Option<PathBuf>,
        config: Option<PathBuf>,
        device: String,
        precision: &str,
        tta: bool,
        overlap: Option<usize>,
        chunk_size: Option<usize>,
        batch_size: Option<usize>,
        instrumental: bool,
    ) -> PyResult<Self> {
        let precision: Precision = precision.parse().map_err(PyValueError::new_err)?;
        let mut builder = match model {
            Some(path) => Separator::builder(path),
            None => Separator::builtin(),
        };
        if let Some(config) = config {
            builder = builder.config(config);
        }
        let builder = builder
            .device(device)
            .precision(precision)
            .tta(tta)
            .overlap(overlap)
            .chunk_size(chunk_size)
            .batch_size(batch_size)
            .instrumental(instrumental);
        let inner = py.detach(|| builder.open()).map_err(py_err)?;
        Ok(Self { inner })
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        self.inner.sample_rate()
    }

    #[getter]
    fn channels(&self) -> usize {
        self.inner.channels()
    }

    #[getter]
    fn stems(&self) -> Vec<String> {
        self.inner.stems().to_vec()
    }

    /// The models, one line each: weights file, parameters, device and engine.
    fn describe(&self) -> Vec<String> {
        self.inner
            .models()
            .iter()
            .map(|m| {
                format!(
                    "{} ({} parameters, {})",
                    m.name.display(),
                    m.parameters,
                    m.engine
                )
            })
            .collect()
    }

    /// `audio`: float32 `(channels, frames)`, C-contiguous. Returns {stem: (channels, frames)}.
    fn separate<'py>(
        &self,
        py: Python<'py>,
        audio: PyReadonlyArray2<'py, f32>,
        sample_rate: u32,
    ) -> PyResult<Bound<'py, PyDict>> {
        let view = audio.as_array();
        let channels: Vec<Vec<f32>> = view.outer_iter().map(|row| row.to_vec()).collect();
        let audio = Audio::new(sample_rate, channels)
            .map_err(|e| PyValueError::new_err(full_message(&e)))?;
        let stems = py.detach(|| self.inner.separate(&audio)).map_err(py_err)?;
        let out = PyDict::new(py);
        for (name, stem) in stems {
            let (rows, frames) = (stem.num_channels(), stem.frames());
            let flat: Vec<f32> = stem.into_channels().into_iter().flatten().collect();
            let array = Array2::from_shape_vec((rows, frames), flat)
                .map_err(|e| RoformerError::new_err(e.to_string()))?;
            let array: Bound<'py, PyArray2<f32>> = array.into_pyarray(py);
            out.set_item(name, array)?;
        }
        Ok(out)
    }

    /// Separates `input` into `out_dir/<stem>.<ext>`; returns the written paths
    /// (empty when every output existed and `overwrite` is off).
    fn separate_file(
        &self,
        py: Python<'_>,
        input: PathBuf,
        out_dir: PathBuf,
        format: &str,
        pcm: &str,
        overwrite: bool,
    ) -> PyResult<Vec<PathBuf>> {
        let options = FileOptions {
            format: output_format(format, pcm)?,
            overwrite,
            ..FileOptions::default()
        };
        let outcome = py
            .detach(|| {
                self.inner
                    .separate_file(&input, Path::new(&out_dir), &options, &mut Hooks::new())
            })
            .map_err(py_err)?;
        Ok(match outcome {
            FileOutcome::Written(paths) => paths,
            _ => Vec::new(),
        })
    }
}

#[pymodule]
fn _roformer(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySeparator>()?;
    m.add("RoformerError", m.py().get_type::<RoformerError>())?;
    Ok(())
}
