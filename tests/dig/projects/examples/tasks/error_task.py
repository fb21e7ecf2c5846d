def breaks():
    raise ValueError("this step breaks on purpose")


def report_error(error=None):
    print("the workflow failed as expected:")
    print("  message: " + str((error or {}).get("message")))
