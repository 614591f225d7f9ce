from django.db import models


class Invoice(models.Model):
    order = models.CharField(max_length=120, db_index=True)
    execution = models.CharField(max_length=40)

    class Meta:
        app_label = "invoices"
        db_table = "suite_invoice"
