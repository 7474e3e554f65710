"""Reports: figures (``reports.figures``), the HTML report (``view`` reads the folder into a view
model, ``html`` renders it through the Jinja2 templates in ``templates/``) and Markdown tables.
Reports read what training and analysis wrote; they compute no statistic and decide no verdict."""
