from datetime import datetime


class Helper:
    def show_time(self, label, time):
        print([label, datetime.fromisoformat(time).isoformat()])

    def describe(self, size, color):
        print(f"a {size} {color} thing")
