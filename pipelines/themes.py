"""Named colour themes for the heatmap images (`lsr render --theme NAME`, `lsr themes`).

A theme is one *diverging* colour map for the heatmap (its centre = ratio 1 = ln(ratio) 0, its top
end = long-heavy, its bottom end = short-heavy) plus the colours the top panel and the page need.
The maps are never hand-written: they come from matplotlib's diverging maps, from `cmcrameri`
(Fabio Crameri's perceptually uniform, colour-blind-safe scientific maps) and, through `cmap` (one
catalogue holding these collections' maps unchanged, each loaded only when asked for), from
colorcet (Peter Kovesi), cmocean, CMasher, Paul Tol, seaborn, ParaView and vispy. Only diverging
maps qualify: sequential, cyclic and two-ramp "multi-sequential" maps would give ratio 1 no
neutral colour. The same map under two names (colorcet's `coolwarm` is a redraw of matplotlib's,
`berlin` ships with matplotlib and cmcrameri) is offered once. Every map comes as is and reversed
(`_r`: swaps which end means "long"), each on a light and on a dark page (`-dark`), so `vik`,
`vik_r`, `vik-dark`, `vik_r-dark` are four themes.

Every other colour of a theme is *derived* from its map so that nothing collides with it:
- the "no data" grey is the grey farthest from every colour of the map (missing cells must never
  look like a real value, least of all the neutral centre), and it is hatched in the image;
- the top panel's lines come from the Okabe-Ito palette (safe for colour-blind readers), picking
  the colours farthest from the map's two ends, because those ends shade the signal zones behind
  the lines;
- the signal-zone shading uses the map's own ends, so "upper zone" reads in the same colour as a
  long-heavy heatmap cell.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Final

# numpy only: whoever asks for themes has it loaded already (the CLI through pandas). The colour
# libraries are imported when a theme is built, never for `theme_names()`: matplotlib with
# cmcrameri costs about a second, and `lsr themes` needs neither.
import numpy as np

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

__all__ = [
    "DEFAULT_THEME",
    "Theme",
    "UnknownThemeError",
    "get_theme",
    "theme_names",
]

# Crameri's diverging maps: perceptually uniform and readable with every common colour-vision
# deficiency. `berlin`, `managua` and `vanimo` also ship with matplotlib >= 3.10 as copies of these,
# so they are taken from here only, once.
_CRAMERI_DIVERGING: Final = (
    "vik",
    "roma",
    "broc",
    "cork",
    "bam",
    "berlin",
    "lisbon",
    "tofino",
    "managua",
    "vanimo",
)
# matplotlib's diverging maps, keyed by our lower-case name. `RdGy` is left out on purpose: its
# short side *is* the grey ramp, so no "no data" grey could be told apart from real values.
_MPL_DIVERGING: Final = {
    "brbg": "BrBG",
    "prgn": "PRGn",
    "piyg": "PiYG",
    "puor": "PuOr",
    "rdbu": "RdBu",
    "rdylbu": "RdYlBu",
    "rdylgn": "RdYlGn",
    "spectral": "Spectral",
    "coolwarm": "coolwarm",
    "bwr": "bwr",
    "seismic": "seismic",
}
# ColorBrewer flags these as colour-blind safe; Moreland designed coolwarm to be. RdYlGn, Spectral,
# bwr and seismic are offered because people know them, not recommended.
_MPL_COLORBLIND_SAFE: Final = frozenset(
    {"brbg", "prgn", "piyg", "puor", "rdbu", "rdylbu", "coolwarm"}
)

# Diverging maps of other collections, read from `cmap`'s catalogue (its colour data equal the
# collections' own packages'), keyed by our name: the collection's short name where it has one.
_CMAP_DIVERGING: Final = {
    # cmocean (Thyng et al. 2016, oceanography): perceptually uniform.
    "balance": "cmocean:balance",
    "curl": "cmocean:curl",
    "delta": "cmocean:delta",
    "diff": "cmocean:diff",
    "tarn": "cmocean:tarn",
    # CMasher (van der Velden 2020): perceptually uniform. Its cyclic maps (seasons, ...) are out:
    # both ends are one colour, so the most long-heavy cell would look like the most short-heavy.
    "fusion": "cmasher:fusion",
    "guppy": "cmasher:guppy",
    "holly": "cmasher:holly",
    "iceburn": "cmasher:iceburn",
    "pride": "cmasher:pride",
    "prinsenvlag": "cmasher:prinsenvlag",
    "redshift": "cmasher:redshift",
    "seaweed": "cmasher:seaweed",
    "viola": "cmasher:viola",
    "waterlily": "cmasher:waterlily",
    "watermelon": "cmasher:watermelon",
    "wildfire": "cmasher:wildfire",
    # colorcet (Kovesi 2015): perceptually uniform; CET names where no short one exists. CET_D1,
    # colorcet's `coolwarm`, is left out: a redraw of matplotlib's coolwarm, nearly its colours.
    "bwra": "colorcet:CET_D1A",
    "gwv": "colorcet:CET_D2",
    "gwr": "colorcet:CET_D3",
    "bkr": "colorcet:CET_D4",
    "gkr": "colorcet:CET_D5",
    "bky": "colorcet:CET_D6",
    "bjy": "colorcet:CET_D7",
    "bjr": "colorcet:CET_D8",
    "cet_d9": "colorcet:CET_D9",
    "cet_d10": "colorcet:CET_D10",
    "cet_d11": "colorcet:CET_D11",
    "cet_d12": "colorcet:CET_D12",
    "bwg": "colorcet:CET_D13",
    "rainbow3": "colorcet:CET_R3",  # Kovesi's diverging rainbow: yellow is the centre
    "bwy": "colorcet:CET_CBD1",
    "cet_cbd2": "colorcet:CET_CBD2",
    "cwr": "colorcet:CET_CBTD1",
    # Paul Tol. Left out: his BuRd and PRGn (ColorBrewer's 9-class RdBu reversed and PRGn, i.e.
    # our rdbu and prgn without their darkest ends) and his sunset (a retuned RdYlBu, nearly it).
    "nightfall": "tol:nightfall",
    "icefire": "seaborn:icefire",
    "vlag": "seaborn:vlag",
    "fast": "paraview:fast",  # Moreland's; ParaView's coolwarm is matplotlib's, so left out
    "pampa": "contrib:pampa",
    # vispy: plain three-colour ramps, not perceptually uniform. Left out: PuGr (its green half is
    # greyish: every "no data" grey comes too close to it) and RdYeBuCy (a transparent centre).
    "grbu": "vispy:GrBu",
    "grbu_d": "vispy:GrBu_d",
    "vispy_rdbu": "vispy:RdBu",
    "vispy_diverging": "vispy:diverging",
}
# Documented as readable with colour-vision deficiencies: colorcet's CB maps (Kovesi 2017; CBD1
# and CBD2 for protanopia/deuteranopia, CBTD1 for tritanopia) and Tol's schemes. cmocean and
# CMasher claim it for "most" maps but name none, so none is flagged.
_CMAP_COLORBLIND_SAFE: Final = frozenset({"bwy", "cet_cbd2", "cwr", "nightfall"})

# Default: Crameri's `vik` (blue = short-heavy, white = balanced, red-brown = long-heavy). It is
# perceptually uniform (equal steps in ln(ratio) look like equal steps in colour, so no false
# "edges" appear in the heatmap), readable for deuteranopia/protanopia/tritanopia and in greyscale
# print, and its light centre keeps a balanced market visually quiet.
DEFAULT_THEME: Final = "vik"

_REVERSED_SUFFIX: Final = "_r"
_DARK_SUFFIX: Final = "-dark"

# Okabe & Ito (2008), the standard colour-blind-safe qualitative palette, for the top panel's
# lines, in order of preference: orange first so BTC gets "its" colour whenever the map allows.
_OKABE_ITO: Final = (
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#0072B2",  # blue
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
)
_MIN_LINE_DISTANCE: Final = 0.35  # RGB distance a line needs from both zone colours
# "No data" greys in order of preference (a mid grey reads as "absent" on light and dark pages);
# the first far enough from every colour of the map wins, else the farthest one.
_NO_DATA_GREYS: Final = (0.5, 0.6, 0.4, 0.7, 0.3)
_MIN_NO_DATA_DISTANCE: Final = 0.2
_LIGHT_PAGE: Final = ("#ffffff", "#222222")  # (background, foreground)
_DARK_PAGE: Final = ("#15171c", "#e4e4e4")
_MIN_LINE_CONTRAST: Final = 2.2  # WCAG contrast ratio a line colour needs against the page
# The zone colours (upper / lower extreme) come from near the map's ends, moved towards the
# centre until they stand out from the page: many maps end near-black, invisible on a dark page.
_ZONE_START: Final = 20  # of 256 samples from each end: near the end, not the extreme itself
_MIN_ZONE_CONTRAST: Final = 3.0


class UnknownThemeError(ValueError):
    """`--theme` named no known theme; the message suggests the closest names."""


@dataclass(frozen=True)
class Theme:
    """Everything a heatmap image needs to know about colour."""

    name: str
    cmap: Colormap  # diverging; bottom = short-heavy, top = long-heavy; `bad` = no-data grey
    source: str  # the map's collection: "cmcrameri", "matplotlib", "colorcet", "cmocean", ...
    colorblind_safe: bool
    dark: bool
    background: str
    foreground: str
    btc_color: str  # BTC L/S line
    alt_color: str  # altcoin-average L/S line
    price_color: str  # BTC price line (right axis): neutral, it is context rather than signal
    upper_zone_color: str  # crowd at its long extreme
    lower_zone_color: str  # crowd at its short extreme
    no_data_color: str
    no_data_hatch_color: str


@dataclass(frozen=True)
class _Spec:
    source: str  # what Theme.source says
    loader: str  # the package the map is read from: "cmcrameri", "matplotlib" or "cmap"
    map_name: str  # the loader's name for it
    reversed: bool
    dark: bool
    colorblind_safe: bool


def _build_specs() -> dict[str, _Spec]:
    bases: list[tuple[str, str, str, str, bool]] = [
        (name, "cmcrameri", "cmcrameri", name, True) for name in _CRAMERI_DIVERGING
    ]
    bases += [
        (key, "matplotlib", "matplotlib", mpl_name, key in _MPL_COLORBLIND_SAFE)
        for key, mpl_name in _MPL_DIVERGING.items()
    ]
    bases += [
        (key, cmap_name.split(":")[0], "cmap", cmap_name, key in _CMAP_COLORBLIND_SAFE)
        for key, cmap_name in _CMAP_DIVERGING.items()
    ]
    specs: dict[str, _Spec] = {}
    for key, source, loader, map_name, safe in bases:
        for rev in (False, True):
            for dark in (False, True):
                name = key + (_REVERSED_SUFFIX if rev else "") + (_DARK_SUFFIX if dark else "")
                specs[name] = _Spec(source, loader, map_name, rev, dark, safe)
    return specs


_SPECS: Final = _build_specs()


def theme_names() -> list[str]:
    """All theme names: the default first, then alphabetical."""
    return [DEFAULT_THEME, *sorted(n for n in _SPECS if n != DEFAULT_THEME)]


def get_theme(name: str) -> Theme:
    """The theme called `name` (case-insensitive); `UnknownThemeError` lists close matches."""
    key = name.strip().lower()
    spec = _SPECS.get(key)
    if spec is None:
        raise UnknownThemeError(_unknown_message(name))
    return _make_theme(key, spec)


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name.strip().lower(), theme_names(), n=6, cutoff=0.5)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    return f"unknown theme {name!r}{hint} ({len(_SPECS)} themes; `lsr themes` lists them all)"


def _base_cmap(spec: _Spec) -> Colormap:
    cmap: Colormap
    if spec.loader == "cmcrameri":
        import cmcrameri.cm as cmc

        cmap = cmc.cmaps[spec.map_name]
    elif spec.loader == "cmap":
        # Reads its catalogue and this one map's data only: about 50 ms, the import included.
        from cmap import Colormap as CatalogueMap

        cmap = CatalogueMap(spec.map_name).to_mpl()
    else:
        import matplotlib as mpl

        cmap = mpl.colormaps[spec.map_name]
    return cmap.reversed() if spec.reversed else cmap


# Built once per process and name: every image and every RenderRequest asks (a few ms each).
@lru_cache(maxsize=32)
def _make_theme(name: str, spec: _Spec) -> Theme:
    from matplotlib.colors import to_hex

    base = _base_cmap(spec)
    samples = base(np.linspace(0.0, 1.0, 256))[:, :3]
    grey = _most_distinct_grey(samples)
    hatch = min(grey + 0.2, 0.95) if grey < 0.5 else grey - 0.2
    background, foreground = _DARK_PAGE if spec.dark else _LIGHT_PAGE
    lower, upper = _zone_colors(samples, background)
    btc, alt = _line_colors((lower, upper), background)
    return Theme(
        name=name,
        # A copy with `bad` set: the registered map is never mutated (other figures may use it).
        cmap=base.with_extremes(bad=(grey, grey, grey, 1.0)),
        source=spec.source,
        colorblind_safe=spec.colorblind_safe,
        dark=spec.dark,
        background=background,
        foreground=foreground,
        btc_color=btc,
        alt_color=alt,
        price_color="#9a9a9a" if spec.dark else "#555555",
        upper_zone_color=to_hex((float(upper[0]), float(upper[1]), float(upper[2]))),
        lower_zone_color=to_hex((float(lower[0]), float(lower[1]), float(lower[2]))),
        no_data_color=to_hex((grey, grey, grey)),
        no_data_hatch_color=to_hex((hatch, hatch, hatch)),
    )


def _zone_colors(samples: np.ndarray, background: str) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) zone colours: the first sample from each end (from _ZONE_START inwards,
    stopping short of the centre) with enough contrast against the page, else the best one."""
    from matplotlib.colors import to_rgb

    bg = np.array(to_rgb(background))
    n = len(samples)
    picked = []
    for positions in (
        range(_ZONE_START, n // 2 - 16),
        range(n - 1 - _ZONE_START, n // 2 + 16, -1),
    ):
        contrasts = [(_contrast_ratio(samples[i], bg), i) for i in positions]
        enough = [i for c, i in contrasts if c >= _MIN_ZONE_CONTRAST]
        if not enough:  # then the best of the whole half, the extreme end included
            ends = (
                range(0, _ZONE_START)
                if positions.step > 0
                else range(n - 1, n - 1 - _ZONE_START, -1)
            )
            contrasts += [(_contrast_ratio(samples[i], bg), i) for i in ends]
        picked.append(samples[enough[0]] if enough else samples[max(contrasts)[1]])
    return picked[0], picked[1]


def _most_distinct_grey(samples: np.ndarray) -> float:
    """The preferred grey that no colour of the map comes close to (RGB distance)."""
    distances = [float(np.min(np.linalg.norm(samples - g, axis=1))) for g in _NO_DATA_GREYS]
    for grey, distance in zip(_NO_DATA_GREYS, distances, strict=True):
        if distance >= _MIN_NO_DATA_DISTANCE:
            return grey
    return _NO_DATA_GREYS[int(np.argmax(distances))]


def _line_colors(zone_rgbs: tuple[np.ndarray, np.ndarray], background: str) -> tuple[str, str]:
    """Two Okabe-Ito colours readable on the page and far from the zone shading behind them."""
    from matplotlib.colors import to_rgb

    bg = np.array(to_rgb(background))
    scored: list[tuple[float, str]] = []
    for colour in _OKABE_ITO:
        rgb = np.array(to_rgb(colour))
        if _contrast_ratio(rgb, bg) >= _MIN_LINE_CONTRAST:
            scored.append((min(float(np.linalg.norm(rgb - z)) for z in zone_rgbs), colour))
    good = [colour for distance, colour in scored if distance >= _MIN_LINE_DISTANCE]
    # Rarely a map's ends sit near most of the palette: then take the farthest colours.
    fallback = [colour for _, colour in sorted(scored, key=lambda item: -item[0])]
    chosen = [*good, *(c for c in fallback if c not in good)]
    return chosen[0], chosen[1]


def _contrast_ratio(a: np.ndarray, b: np.ndarray) -> float:
    la, lb = _relative_luminance(a), _relative_luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def _relative_luminance(rgb: np.ndarray) -> float:
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))
