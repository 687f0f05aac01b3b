//! The fused mask estimators: each band's MLP (Linears with tanh between, then GLU) on the CPU
//! engine's matrix products, one task per (item, band) so the 60-odd small MLPs share the cores.

use candle_core::{Device, Result as CResult, Tensor};
use rayon::prelude::*;

use super::kernels::{glu_bias_rows, swap_token_axes, tanh_bias_rows};
use super::precision::Precision;
use super::weight::Weight;
use crate::model::backend::RunMaskHeads;
use crate::model::linear::Linear;
use crate::model::mask_estimator::MaskHeads;

#[derive(Debug, Clone)]
struct Layer {
    weight: Weight,
    bias: Vec<f32>,
}

impl Layer {
    fn new(linear: &Linear, precision: Precision) -> CResult<Self> {
        let (out, inp) = linear.weight.dims2()?;
        let weight = Weight::new(linear.weight.flatten_all()?.to_vec1()?, out, inp, precision);
        let bias = match &linear.bias {
            Some(b) => b.to_vec1()?,
            None => vec![0.0; out],
        };
        Ok(Self { weight, bias })
    }
}

/// All stems' estimators: `[stem][band]` MLPs.
#[derive(Debug)]
pub struct FusedMaskEstimators {
    mlps: Vec<Vec<Vec<Layer>>>,
    /// Each band's mask width (`dim_in` of the band split), in order.
    widths: Vec<usize>,
}

impl FusedMaskEstimators {
    pub fn new(heads: MaskHeads, precision: Precision) -> CResult<Self> {
        let estimators = heads.0;
        let mut mlps = Vec::with_capacity(estimators.len());
        let mut widths = Vec::new();
        for estimator in estimators {
            widths.clear();
            let mut bands = Vec::with_capacity(estimator.bands.len());
            // By value: each band's reference weights are freed once its copy exists, so the
            // conversion never holds two copies of all estimators.
            for band in estimator.bands {
                let layers = band
                    .layers
                    .into_iter()
                    .map(|l| Layer::new(&l, precision))
                    .collect::<CResult<Vec<_>>>()?;
                widths.push(layers.last().map_or(0, |l| l.weight.out_dim() / 2));
                bands.push(layers);
            }
            mlps.push(bands);
        }
        Ok(Self { mlps, widths })
    }
}

impl RunMaskHeads for FusedMaskEstimators {
    /// `x: [b, t, bands, dim]` -> masks `[b, stems, t, sum(widths)]`.
    fn forward(&self, x: Tensor) -> CResult<Tensor> {
        let (b, t, f, d) = x.dims4()?;
        let total: usize = self.widths.iter().sum();
        let stems = self.mlps.len();
        // [b, f, t, d]: each band's frames are contiguous rows.
        let x = x.flatten_all()?.to_vec1::<f32>()?;
        let mut by_band = vec![0.0f32; x.len()];
        swap_token_axes(&x, &mut by_band, b, t, f, d);
        drop(x);
        let tasks: Vec<(usize, usize, usize)> = (0..b)
            .flat_map(|i| (0..stems).flat_map(move |s| (0..f).map(move |band| (i, s, band))))
            .collect();
        let results: Vec<Vec<f32>> = tasks
            .par_iter()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(h0, h1): &mut (Vec<f32>, Vec<f32>), &(i, s, band)| {
                    let rows = &by_band[(i * f + band) * t * d..(i * f + band + 1) * t * d];
                    band_forward(&self.mlps[s][band], rows, t, h0, h1)
                },
            )
            .collect();
        let mut out = vec![0.0f32; b * stems * t * total];
        let offsets: Vec<usize> = self
            .widths
            .iter()
            .scan(0, |acc, &w| {
                let at = *acc;
                *acc += w;
                Some(at)
            })
            .collect();
        for (&(i, s, band), mask) in tasks.iter().zip(&results) {
            let w = self.widths[band];
            for (frame, row) in mask.chunks_exact(w).enumerate() {
                let at = ((i * stems + s) * t + frame) * total + offsets[band];
                out[at..at + w].copy_from_slice(row);
            }
        }
        Tensor::from_vec(out, (b, stems, t, total), &Device::Cpu)
    }
}

/// One band's MLP on `rows` (`t` frames of `dim`): the GLU'd mask `[t, width]`.
fn band_forward(
    layers: &[Layer],
    rows: &[f32],
    t: usize,
    cur: &mut Vec<f32>,
    next: &mut Vec<f32>,
) -> Vec<f32> {
    cur.clear();
    cur.extend_from_slice(rows);
    let mut mask = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        let n = layer.weight.out_dim();
        next.resize(t * n, 0.0);
        layer.weight.matmul_serial(cur, t, next, false);
        if l + 1 < layers.len() {
            tanh_bias_rows(next, &layer.bias);
            std::mem::swap(cur, next);
        } else {
            mask = vec![0.0f32; t * n / 2];
            glu_bias_rows(next, &layer.bias, &mut mask);
        }
    }
    mask
}
