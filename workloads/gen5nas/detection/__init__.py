"""Object detection on the elastic MBConv backbone.

Modules: ``coco_eval`` (COCO result records from predictions, COCOeval bbox metrics).
"""
