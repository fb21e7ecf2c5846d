def show_table(table=None):
    print("show_table: table = " + str(table))
