"""Figures: the figure model (`model`), what a compare or neurons figure holds (`build`), the
layouts by name (`layouts`), drawing to pixels (`raster`) and to PDF/SVG (`vector`), colours
(`colour`) and the PNG check (`png`)."""
