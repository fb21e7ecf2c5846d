import digdag


def write_report():
    with open("report.txt", "w") as f:
        f.write("fine")


def check_report():
    with open("report.txt") as f:
        text = f.read()
    if len(text) < 2:
        raise Exception("the report is too short")
    print("report checked")


class Reporter:
    def run(self):
        with open("report2.txt", "w") as f:
            f.write("fine")
        digdag.env.store({"report": "report2.txt"})

    def check(self, report):
        print("checking " + report)
        with open(report) as f:
            if len(f.read()) < 2:
                raise Exception("the report is too short")
        print("report checked")
