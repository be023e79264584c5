//! The parameters of the AMG hierarchy and V-cycle (`[solver.amg]` in a
//! scene).

/// The relaxation used as pre- and post-smoother.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoother {
    /// Chebyshev polynomial in `D^-1 A` of degree [`AmgSettings::degree`].
    Chebyshev,
    /// Damped Jacobi, weight `4/3 / rho(D^-1 A)`, [`AmgSettings::degree`]
    /// steps per sweep.
    Jacobi,
}

impl Smoother {
    /// Scene names.
    pub const NAMES: &'static [&'static str] = &["chebyshev", "jacobi"];

    /// The scene name.
    pub fn name(self) -> &'static str {
        match self {
            Smoother::Chebyshev => "chebyshev",
            Smoother::Jacobi => "jacobi",
        }
    }

    /// Parses a scene name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chebyshev" => Some(Smoother::Chebyshev),
            "jacobi" => Some(Smoother::Jacobi),
            _ => None,
        }
    }
}

/// Which couplings count as strong (`theta` is the threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// Negative couplings only: `-a_ij >= theta sqrt(a_ii a_jj)` (the
    /// classical sign convention). About a third of the Quad-8 stiffness
    /// couplings are positive (corner to corner and across an element);
    /// aggregating along the negative ones only gives smaller, better
    /// aggregates: 34 instead of 38 iterations on `y_tube_195k`, 46
    /// instead of 55 on a 100k-node venturi.
    Negative,
    /// Magnitude: `|a_ij| >= theta sqrt(|a_ii a_jj|)` (PyAMG's
    /// "symmetric" strength).
    Magnitude,
}

impl Strength {
    /// Scene names.
    pub const NAMES: &'static [&'static str] = &["negative", "magnitude"];

    /// The scene name.
    pub fn name(self) -> &'static str {
        match self {
            Strength::Negative => "negative",
            Strength::Magnitude => "magnitude",
        }
    }

    /// Parses a scene name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "negative" => Some(Strength::Negative),
            "magnitude" => Some(Strength::Magnitude),
            _ => None,
        }
    }
}

/// Parameters of the AMG hierarchy and V-cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmgSettings {
    /// Strength threshold `theta` (must be in `(0, 1)`; 0.08).
    pub theta: f64,
    /// Which couplings are strong ([`Strength::Negative`]).
    pub strength: Strength,
    /// Smoother ([`Smoother::Chebyshev`]).
    pub smoother: Smoother,
    /// Chebyshev degree, or Jacobi steps per sweep (products per sweep;
    /// 2).
    pub degree: usize,
    /// Smoothing sweeps before the coarse correction (1).
    pub pre_sweeps: usize,
    /// Smoothing sweeps after the coarse correction (1; keep equal to
    /// `pre_sweeps` for a symmetric preconditioner).
    pub post_sweeps: usize,
    /// Stop coarsening at this many rows (dense Cholesky below; 500).
    pub max_coarse: usize,
    /// At most this many levels, the coarsest included (12).
    pub max_levels: usize,
    /// Chebyshev interval `[rho_hat / cheb_ratio, rho_hat]` (30).
    pub cheb_ratio: f64,
    /// Lanczos steps for the spectral radius estimates (10).
    pub lanczos_steps: usize,
    /// Prolongator smoothing weight times `rho(D^-1 A)` (4/3).
    pub omega_scale: f64,
}

impl Default for AmgSettings {
    fn default() -> Self {
        Self {
            theta: 0.08,
            strength: Strength::Negative,
            smoother: Smoother::Chebyshev,
            degree: 2,
            pre_sweeps: 1,
            post_sweeps: 1,
            max_coarse: 500,
            max_levels: 12,
            cheb_ratio: 30.0,
            lanczos_steps: 10,
            omega_scale: 4.0 / 3.0,
        }
    }
}
