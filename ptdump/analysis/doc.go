// Package analysis reads meaning out of parsed kernel_page_tables dumps:
// per-region statistics (Stats), a region-aware diff of two dumps (Diff) and
// a heat map of the linear map's leaf sizes (Heatmap). It lives apart from
// ptdump, the format, so that the model (kernel, capture) does not pull in
// image and font packages.
package analysis
