/* The charts beside the option chain. Their data comes in the page (first render) and then in
 * the socket's `chain-charts-data` element, which the server swaps at most once a second; each
 * chart is updated in place, and the intraday series are capped, so a page left open all day
 * keeps the same number of objects.
 */
(function () {
  "use strict";

  var IST_SECONDS = 19800;      // lightweight-charts draws UTC: shift epoch seconds to read as IST
  var MAX_POINTS = 800;         // a session is 375 minutes; the intraday series never grows past this
  var COLOURS = { ce: "#f0555a", pe: "#2fbf71", accent: "#4da3ff", warn: "#e0a83a", muted: "#8a97a6", grid: "#27313d" };

  var charts = {};
  var lastDataText = null;
  var intraday = { labels: [], times: [], pcr: [], maxPain: [], atmIv: [] };
  var candleSeries = null;
  var lastCandleTime = 0;

  function readJson(id) {
    var element = document.getElementById(id);
    if (!element) { return null; }
    try { return JSON.parse(element.textContent || "null"); } catch (error) { return null; }
  }

  function hhmm(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleTimeString("en-GB", { timeZone: "Asia/Kolkata", hour: "2-digit", minute: "2-digit" });
  }

  // Vertical lines at values between category labels (strikes): the spot, the gamma flip.
  var markersPlugin = {
    id: "markers",
    afterDatasetsDraw: function (chart, args, options) {
      var strikes = chart.data.labels;
      if (!strikes || strikes.length < 2) { return; }
      var area = chart.chartArea;
      var context = chart.ctx;
      (options.lines || []).forEach(function (line) {
        if (line.value === null || line.value === undefined) { return; }
        var x = pixelForStrike(chart, strikes, line.value);
        if (x === null) { return; }
        context.save();
        context.strokeStyle = line.colour;
        context.setLineDash([4, 3]);
        context.beginPath();
        context.moveTo(x, area.top);
        context.lineTo(x, area.bottom);
        context.stroke();
        context.fillStyle = line.colour;
        context.font = "11px system-ui, sans-serif";
        context.fillText(line.label, Math.min(x + 4, area.right - 60), area.top + 12);
        context.restore();
      });
    }
  };

  function pixelForStrike(chart, strikes, value) {
    var scale = chart.scales.x;
    for (var i = 0; i < strikes.length - 1; i++) {
      var low = Number(strikes[i]);
      var high = Number(strikes[i + 1]);
      if (value >= low && value <= high) {
        var left = scale.getPixelForValue(i);
        var right = scale.getPixelForValue(i + 1);
        return left + (right - left) * (value - low) / (high - low);
      }
    }
    return null;
  }

  // Axis labels as the table reads: lakhs and crores.
  function compact(value) {
    var size = Math.abs(value);
    if (size >= 1e7) { return (value / 1e7).toFixed(size >= 1e9 ? 0 : 1) + "Cr"; }
    if (size >= 1e5) { return (value / 1e5).toFixed(1) + "L"; }
    return String(value);
  }

  var compactAxis = { y: { ticks: { callback: compact } } };

  function canvasOf(id) {
    var figure = document.getElementById(id);
    return figure ? figure.querySelector("canvas") : null;
  }

  function makeChart(id, config) {
    var canvas = canvasOf(id);
    if (!canvas) { return null; }
    var scales = config.scales;
    delete config.scales;
    config.options = Object.assign({
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { labels: { boxWidth: 10 } }, markers: { lines: [] } },
      scales: Object.assign({ x: { ticks: { maxRotation: 0, autoSkipPadding: 8 } } }, scales || {})
    }, config.options || {});
    return new Chart(canvas, config);
  }

  function barDataset(label, colour) {
    return { label: label, data: [], backgroundColor: colour, borderWidth: 0, barPercentage: 0.9, categoryPercentage: 0.8 };
  }

  function lineDataset(label, colour, axis) {
    return { label: label, data: [], borderColor: colour, backgroundColor: colour, pointRadius: 0, borderWidth: 1.6, spanGaps: true, yAxisID: axis || "y" };
  }

  function createCharts() {
    Chart.defaults.color = COLOURS.muted;
    Chart.defaults.borderColor = COLOURS.grid;
    Chart.register(markersPlugin);
    charts.oi = makeChart("chart-oi", { type: "bar", data: { labels: [], datasets: [barDataset("Call OI", COLOURS.ce), barDataset("Put OI", COLOURS.pe)] }, scales: compactAxis });
    charts.oiChange = makeChart("chart-oich", { type: "bar", data: { labels: [], datasets: [barDataset("Call OI change", COLOURS.ce), barDataset("Put OI change", COLOURS.pe)] }, scales: compactAxis });
    charts.gex = makeChart("chart-gex", { type: "bar", data: { labels: [], datasets: [barDataset("GEX (₹)", COLOURS.accent)] }, scales: compactAxis });
    charts.smile = makeChart("chart-smile", { type: "line", data: { labels: [], datasets: [lineDataset("Call IV %", COLOURS.ce), lineDataset("Put IV %", COLOURS.pe)] } });
    charts.intraday = makeChart("chart-intraday", {
      type: "line",
      data: { labels: intraday.labels, datasets: [
        lineDataset("PCR", COLOURS.accent, "y"),
        lineDataset("ATM IV %", COLOURS.warn, "y1"),
        lineDataset("Max pain", COLOURS.muted, "y2")
      ] },
      options: { scales: {
        x: { ticks: { maxRotation: 0, autoSkipPadding: 12 } },
        y: { position: "left", title: { display: true, text: "PCR" } },
        y1: { position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "ATM IV %" } },
        y2: { position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "Max pain" } }
      } }
    });
    var candles = document.querySelector("#chart-candles .plot");
    if (candles && window.LightweightCharts) {
      var chart = LightweightCharts.createChart(candles, {
        autoSize: true,
        layout: { background: { color: "transparent" }, textColor: COLOURS.muted },
        grid: { vertLines: { color: COLOURS.grid }, horzLines: { color: COLOURS.grid } },
        timeScale: { timeVisible: true, secondsVisible: false }
      });
      candleSeries = chart.addSeries(LightweightCharts.CandlestickSeries, {
        upColor: COLOURS.pe, downColor: COLOURS.ce, wickUpColor: COLOURS.pe, wickDownColor: COLOURS.ce, borderVisible: false
      });
    }
  }

  function setStrikeChart(chart, strikes, series, lines) {
    if (!chart) { return; }
    chart.data.labels = strikes;
    series.forEach(function (values, index) { chart.data.datasets[index].data = values; });
    chart.options.plugins.markers.lines = lines;
    chart.update("none");
  }

  function addIntradayPoint(point) {
    if (!point || point.time === undefined) { return; }
    var minute = point.time - point.time % 60;
    var last = intraday.times.length - 1;
    if (last >= 0 && intraday.times[last] > minute) { return; }  // out of order: keep the series monotonic
    if (last >= 0 && intraday.times[last] === minute) {
      intraday.pcr[last] = point.pcr; intraday.atmIv[last] = point.atm_iv; intraday.maxPain[last] = point.max_pain;
    } else {
      intraday.times.push(minute); intraday.labels.push(hhmm(minute));
      intraday.pcr.push(point.pcr); intraday.atmIv.push(point.atm_iv); intraday.maxPain.push(point.max_pain);
      if (intraday.times.length > MAX_POINTS) {
        ["times", "labels", "pcr", "atmIv", "maxPain"].forEach(function (key) { intraday[key].shift(); });
      }
    }
  }

  function drawIntraday() {
    var chart = charts.intraday;
    if (!chart) { return; }
    chart.data.labels = intraday.labels;
    chart.data.datasets[0].data = intraday.pcr;
    chart.data.datasets[1].data = intraday.atmIv;
    chart.data.datasets[2].data = intraday.maxPain;
    chart.update("none");
  }

  function updateCandle(candle) {
    if (!candleSeries || !candle || candle.time < lastCandleTime) { return; }
    lastCandleTime = candle.time;
    candleSeries.update({ time: candle.time + IST_SECONDS, open: candle.open, high: candle.high, low: candle.low, close: candle.close });
  }

  function applyData(data) {
    if (!data) { return; }
    if (data.strikes) {
      var spotLine = { value: data.spot, label: "spot", colour: COLOURS.accent };
      setStrikeChart(charts.oi, data.strikes, [data.ce_oi, data.pe_oi], [spotLine]);
      setStrikeChart(charts.oiChange, data.strikes, [data.ce_oi_change, data.pe_oi_change], [spotLine]);
      if (charts.gex) {
        charts.gex.data.datasets[0].backgroundColor = (data.gex || []).map(function (value) { return value < 0 ? COLOURS.ce : COLOURS.pe; });
      }
      setStrikeChart(charts.gex, data.strikes, [data.gex], [spotLine, { value: data.gamma_flip, label: "flip", colour: COLOURS.warn }]);
      var smile = data.smile || { strikes: [], ce_iv: [], pe_iv: [] };
      setStrikeChart(charts.smile, smile.strikes, [smile.ce_iv, smile.pe_iv], [spotLine]);
      addIntradayPoint(data.point);
      drawIntraday();
    }
    updateCandle(data.candle);
  }

  // The ATM row in view and the strike column centred, on any screen.
  function centreOnAtm() {
    var wrap = document.querySelector(".chain-wrap");
    var atm = document.querySelector("#chain tr.atm");
    var strike = document.querySelector("#chain thead th.strike");
    if (!wrap || !strike) { return; }
    wrap.scrollLeft = strike.offsetLeft + strike.offsetWidth / 2 - wrap.clientWidth / 2;
    if (atm) { wrap.scrollTop = atm.offsetTop - wrap.clientHeight / 2; }
  }

  function start() {
    centreOnAtm();
    if (!window.Chart) { return; }
    createCharts();
    (readJson("chain-history") || []).forEach(addIntradayPoint);
    var candles = readJson("chain-candles") || [];
    if (candleSeries && candles.length) {
      candleSeries.setData(candles.map(function (c) {
        return { time: c.time + IST_SECONDS, open: c.open, high: c.high, low: c.low, close: c.close };
      }));
      lastCandleTime = candles[candles.length - 1].time;
    }
    var element = document.getElementById("chain-charts-data");
    lastDataText = element ? element.textContent : null;
    applyData(readJson("chain-charts-data"));
    drawIntraday();
    document.addEventListener("desk:swapped", function () {
      var current = document.getElementById("chain-charts-data");
      if (!current || current.textContent === lastDataText) { return; }
      lastDataText = current.textContent;
      applyData(readJson("chain-charts-data"));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
