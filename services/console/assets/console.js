// Draws the lag chart from the JSON the lag page embeds (#lag-chart-data) with uPlot.
(function () {
  var el = document.getElementById("lag-chart");
  var src = document.getElementById("lag-chart-data");
  if (!el || !src || typeof uPlot === "undefined") return;
  var d = JSON.parse(src.textContent);
  var palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  var series = [{}];
  d.names.forEach(function (name, i) {
    series.push({ label: name, stroke: palette[i % palette.length], width: 2, spanGaps: true });
  });
  new uPlot({
    width: Math.min(el.clientWidth || 900, 1100),
    height: 320,
    series: series,
    axes: [{}, { label: "messages behind" }],
  }, [d.x].concat(d.series), el);
})();
