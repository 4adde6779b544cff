"""Runs over data sets, headless: the pipelines behind ``saliency-viewer explain``, ``evaluate``
and ``stability`` and the notebook's ``viewer.explain`` on folders.

Each pipeline takes its unit of work from the layers below (a study opened by ``viewer.io``,
predicted by ``viewer.inference``, explained and scored by ``viewer.explain``, through the same
``ViewerSession`` the window uses) and adds what only a run over many studies needs: discovery
and naming, the output folder's files written atomically and committed study by study,
``--resume``, ``problems.csv``, Dask clusters and the HTML report.

- ``explain_run`` / ``explain_study``: ``explain``'s run and one study's files.
- ``evaluation_run`` / ``evaluation_gallery`` / ``evaluation_report``: ``evaluate``.
- ``stability_run``: ``stability``.
- ``cluster`` / ``cluster_spec``: the same studies on a Dask cluster.
- ``row_files``: CSV rows appended, sorted and quoted by one writer.
- ``segmentation_files``: a segmenter's masks written beside the maps.

Nothing here imports Qt; the window and the CLI import this package, never the reverse.
"""
