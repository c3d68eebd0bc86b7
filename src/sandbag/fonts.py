"""Hangul in matplotlib figures: find a Korean font the system has and make it matplotlib's fallback font.

matplotlib's bundled DejaVu Sans has no Hangul, so Korean titles would come out as empty boxes (with a "Glyph ...
missing" warning). The set-up installs Debian's fonts-nanum (or fonts-noto-cjk); any of the families below works.
"""

from __future__ import annotations

from .errors import ConfigError

# Preferred first. Noto/Source Han carry Latin too; Nanum Gothic's Latin is fine for axis numbers.
HANGUL_FAMILIES = ("NanumGothic", "NanumBarunGothic", "Noto Sans CJK KR", "Noto Sans KR", "Source Han Sans KR",
                   "Noto Sans CJK JP", "Malgun Gothic", "AppleGothic", "UnDotum")
FILE_HINTS = ("Nanum", "NotoSansCJK", "NotoSansKR", "SourceHanSans", "malgun", "AppleGothic", "UnDotum")
INSTALL_HINT = ("install a Korean font: Debian/Ubuntu `apt-get install fonts-nanum` (or fonts-noto-cjk), macOS and "
                "Windows ship one (AppleGothic, Malgun Gothic)")


def hangul_family() -> str | None:
    """The first installed font family of HANGUL_FAMILIES, or None."""
    from matplotlib import font_manager

    def first_installed() -> str | None:
        installed = {f.name for f in font_manager.fontManager.ttflist}
        return next((family for family in HANGUL_FAMILIES if family in installed), None)

    found = first_installed()
    if found is None:  # matplotlib's font cache predates the font's installation: add the files it missed
        for path in font_manager.findSystemFonts():
            if any(part in path.replace(" ", "") for part in FILE_HINTS):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):  # a collection or a file FreeType cannot read
                    continue
        found = first_installed()
    return found


def use_hangul_font() -> str:
    """Make DejaVu Sans matplotlib's first font family and a Korean font the fallback for what DejaVu lacks (Hangul),
    and return the Korean family; a one-line ConfigError when the system has none."""
    import matplotlib

    family = hangul_family()
    if family is None:
        raise ConfigError(f"no font with Hangul found for Korean figures; {INSTALL_HINT}")
    # DejaVu Sans first, not the Korean font: plain text falls back glyph by glyph along the list, but mathtext
    # (every tick label of a log axis, `$\mathdefault{10^{-6}}$`) draws `\mathdefault` in one font only, the
    # first family found, whatever mathtext.fontset or mathtext.rm say, and the minus there is U+2212 even with
    # axes.unicode_minus off. Nanum Gothic has no U+2212, so with it first a tick read 10¤6 for 10^-6. DejaVu Sans
    # (matplotlib's own) has every symbol the English figures use, so numbers read as in English, and the
    # Hangul in titles and labels comes from `family`.
    matplotlib.rcParams["font.family"] = ["DejaVu Sans", family]
    return family
