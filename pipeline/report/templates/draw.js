
(function () {
  var config = {displaylogo: false, responsive: true,
                modeBarButtonsToRemove: ["lasso2d", "select2d"]};
  document.querySelectorAll("script[data-chart]").forEach(function (spec) {
    var figure = JSON.parse(spec.textContent);
    Plotly.newPlot(spec.getAttribute("data-chart"), figure.data, figure.layout, config);
  });
})();
